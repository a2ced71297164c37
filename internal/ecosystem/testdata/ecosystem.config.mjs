// The same two apps as ecosystem.json, as an ES module config.
import path from 'node:path';
import { fileURLToPath } from 'url';
import * as os from 'os';

const dir = path.dirname(fileURLToPath(import.meta.url));

const api = {
  name: 'api',
  script: 'server.js',
  cwd: path.resolve(dir, 'app'),
  args: '--port 3000 --verbose',
  instances: 2,
  exec_mode: 'cluster',
  watch: true,
  ignore_watch: 'node_modules',
  max_memory_restart: 150 * 1024 * 1024,
  kill_timeout: 3000,
  stop_exit_codes: [0, 3],
  log_date_format: 'YYYY-MM-DD HH:mm Z',
  env: { NODE_ENV: 'development', PORT: '3000' },
  env_production: { NODE_ENV: 'production' },
};

export default {
  apps: [
    api,
    {
      name: 'worker',
      command: 'worker.py',
      interpreter: os.platform() ? 'python3' : 'none',
      autorestart: false,
      cron: '0 */5 * * * *',
      output: 'logs/worker.out',
      error: 'logs/worker.err',
      min_uptime: '2s',
      restart_delay: 500,
      time: true,
      combine_logs: true,
      stop_exit_codes: [2],
      env: { QUEUE: 'jobs', DEBUG: 'true' },
      env_production: { QUEUE: 'jobs-prod' },
    },
  ],
};
