// A background app of the README's ecosystem file (cmd/corral/readme_test.go): no port, runs until
// stopped. Prints "worker.js <pid> up (STAGE=<$STAGE>)".
console.log(`worker.js ${process.pid} up (STAGE=${process.env.STAGE})`);
setInterval(() => {}, 1 << 30);
