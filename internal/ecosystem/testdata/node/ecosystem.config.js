const app = require('./shared');

module.exports = { apps: [app('one'), app('two')] };
