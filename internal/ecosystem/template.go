package ecosystem

// InitTemplate returns the commented ecosystem.config.js that `corral init` writes. It is a
// CommonJS module with PM2's keys, so pm2 reads it too.
func InitTemplate() string { return initTemplate }

const initTemplate = `// Ecosystem file: describes the apps corral runs.
//
//   corral start ecosystem.config.js                    start (or restart) every app below
//   corral start ecosystem.config.js --only api         only the app named api
//   corral start ecosystem.config.js --env production   use env_production over env
//
// The keys are PM2's, so pm2 reads this file too. Sizes take K, M or G ("300M"); times are
// milliseconds or a duration such as "10s".
module.exports = {
  apps: [
    {
      name: 'app', // what corral list shows and stop/restart/logs take
      script: './app.js', // the file to run, relative to cwd; or a command such as 'npm start'
      // args: '--port 3000', // arguments for the script: a string or an array
      // cwd: __dirname, // working directory (default: where corral start runs)
      // interpreter: 'node', // by extension when unset: .js node, .py python3, .sh bash; 'none' runs the script itself

      instances: 1, // how many copies: a number, 'max' (one per CPU) or -1 (all CPUs but one)
      exec_mode: 'fork', // 'cluster': instances share the server's ports, as with Node's cluster module

      autorestart: true, // restart the app when it exits
      max_restarts: 16, // stop trying (status errored) after this many crashes in a row...
      min_uptime: '1s', // ...where a crash is an exit sooner than this after the start
      restart_delay: 0, // wait this long before restarting
      kill_timeout: 1600, // after the stop signal (SIGINT), wait this long before SIGKILL
      // max_memory_restart: '300M', // restart when the app uses more memory than this
      // cron_restart: '0 3 * * *', // restart on a schedule (cron, optional seconds field)
      // watch: true, // restart when files in cwd change (or a list of paths)
      // ignore_watch: ['node_modules', 'logs'],

      // out_file: './logs/app-out.log', // stdout log (default: in corral's home)
      // error_file: './logs/app-err.log', // stderr log
      // log_date_format: 'YYYY-MM-DD HH:mm:ss', // prefix each log line with the time

      env: {
        // the app's environment
        NODE_ENV: 'development',
      },
      env_production: {
        // applied over env with --env production
        NODE_ENV: 'production',
      },
    },
  ],
};
`
