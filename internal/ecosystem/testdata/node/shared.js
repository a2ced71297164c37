// A local module: the config below requires it, so only node can load that config.
module.exports = function app(name) {
  return { name, script: name + '.js', instances: 1, env: { FROM: 'shared' } };
};
