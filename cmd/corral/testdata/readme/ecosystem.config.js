// The ecosystem file of the README's `corral start ecosystem.config.js --env production --only
// api,worker` (cmd/corral/readme_test.go, which mirrors these apps in ecoApps): --only starts api and
// worker and leaves batch out; --env production applies env_production over env.
module.exports = {
  apps: [
    {
      name: 'api',
      script: 'app.js',
      instances: 2,
      exec_mode: 'cluster',
      env: { STAGE: 'default' },
      env_production: { STAGE: 'production' },
    },
    {
      name: 'worker',
      script: 'worker.js',
      env: { STAGE: 'default' },
      env_production: { STAGE: 'production' },
    },
    {
      name: 'batch',
      script: 'worker.js',
      env: { STAGE: 'default' },
      env_production: { STAGE: 'production' },
    },
  ],
};
