// Sends every IPC message it receives straight back; exits when the channel closes. Prints
// "echo-ipc.js <pid> started" first.
console.log(`echo-ipc.js ${process.pid} started`);
process.on('message', (m) => process.send(m));
