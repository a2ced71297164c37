// Exits with code 3 (CRASH_CODE) after CRASH_AFTER_MS milliseconds (default 100). Prints
// "crash.js <pid> started" first.
console.log(`crash.js ${process.pid} started`);
setTimeout(() => process.exit(Number(process.env.CRASH_CODE || 3)), Number(process.env.CRASH_AFTER_MS || 100));
