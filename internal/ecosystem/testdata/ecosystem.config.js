// The same two apps as ecosystem.json, as a CommonJS config using the path and os shims.
const path = require('path');
const os = require('node:os');

const logs = (name) => ['logs', name].join('/');

module.exports = {
  apps: [
    {
      name: 'api',
      script: 'server.js',
      cwd: path.join(__dirname, 'app'),
      args: ['--port', '3000', '--verbose'],
      instances: os.cpus().length > 0 ? 2 : 1,
      exec_mode: 'cluster',
      watch: '.',
      ignore_watch: ['node_modules'],
      max_memory_restart: '150m',
      kill_timeout: '3s',
      stop_exit_codes: [0, 3],
      log_date_format: 'YYYY-MM-DD HH:mm Z',
      treekill: true,
      env: { NODE_ENV: 'development', PORT: 3000 },
      env_production: { NODE_ENV: 'production' },
    },
  ],
};

module.exports.apps.push({
  name: 'worker',
  script: 'worker.py',
  interpreter: 'python3',
  autorestart: false,
  cron_restart: '0 */5 * * * *',
  out_file: logs('worker.out'),
  err: logs('worker.err'),
  min_uptime: 2000,
  restart_delay: '500ms',
  time: true,
  merge_logs: true,
  stop_exit_codes: 2,
  env: { QUEUE: process.env.CORRAL_TEST_UNSET_VAR || 'jobs', DEBUG: true },
  env_production: { QUEUE: 'jobs-prod' },
});
