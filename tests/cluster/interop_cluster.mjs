// The SDK v1 interop files (tests/interop/*.test.mjs) against a 4-node cluster behind nginx:
// brings the cluster up (deploy/local/cluster.sh, demo app, fast profile), runs the given test
// files with MCPMESH_URL = nginx's URL (tests/interop/helper.mjs then uses it for its HTTP
// fixtures and leaves out the stdio cases), and always brings the cluster down.
// Exit status: the test run's (1 when the cluster did not come up or go down cleanly).
//
// usage: node tests/cluster/interop_cluster.mjs FILE.test.mjs...
// env MCPMESH_NODE = path to mcpmesh-node (required); MCPMESH_NGINX (optional).
import { spawn } from 'node:child_process';
import { clusterUp } from './cluster_helper.mjs';

const RUN_DEADLINE_MS = 240_000;
const files = process.argv.slice(2);
if (!files.length) {
  console.error('usage: interop_cluster.mjs FILE.test.mjs...');
  process.exit(2);
}

let cluster;
let code = 1;
try {
  cluster = await clusterUp({ name: 'interop' });
  console.log(`# interop through nginx at ${cluster.url} (${cluster.nodes.map((n) => n.id).join(', ')}); stdio cases left out`);
  code = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath,
      ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
      { stdio: 'inherit', env: { ...process.env, MCPMESH_URL: cluster.url } });
    const timer = setTimeout(() => {
      console.error(`interop_cluster: the tests did not finish within ${RUN_DEADLINE_MS} ms`);
      child.kill('SIGKILL');
    }, RUN_DEADLINE_MS);
    child.once('error', reject);
    child.once('close', (c, signal) => {
      clearTimeout(timer);
      resolve(c ?? (signal ? 1 : 0));
    });
  });
  // Every node must still run after the suite.
  const dead = cluster.nodes.filter((n) => !cluster.alive(n.id)).map((n) => n.id);
  if (dead.length) {
    console.error(`interop_cluster: nodes exited during the tests: ${dead.join(', ')}`);
    for (const id of dead) console.error(cluster.logTail(id));
    code = 1;
  }
} catch (e) {
  console.error(`interop_cluster: ${e.stack ?? e}`);
  code = 1;
} finally {
  try {
    await cluster?.down();
  } catch (e) {
    console.error(`interop_cluster: ${e.message}`);
    code = 1;
  }
}
process.exit(code);
