// npm `bcrypt` (node.bcrypt.js) half of the legacy-hash vectors: the library Vendure uses.
//
// Needs: Node.js >= 18 and the npm package bcrypt@6.0.0 installed *outside* this repository, e.g.
//     npm install --prefix ~/.cache/latchkey-vectors/node bcrypt@6.0.0
// (bcrypt 6 ships prebuilt binaries in the npm package; 5.x downloads them at install time.)
//
// Normally run by make_vectors.py with NODE_PATH pointing at that node_modules directory.
// Input on stdin:  {"cases": [{"password": "...", "salt": "$2b$12$<22 chars>"} ...],
//                   "compare": [{"password": "...", "hash": "..."} ...]}
// Output on stdout: {"version": "...", "hashes": ["..."], "compare": [true|false|"error: ..."]}
'use strict';

const bcrypt = require('bcrypt');
const version = require('bcrypt/package.json').version;

let raw = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { raw += chunk; });
process.stdin.on('end', () => {
    const input = JSON.parse(raw || '{}');
    // Strings go in as JavaScript strings; node.bcrypt.js hashes their UTF-8 encoding.
    const hashes = (input.cases || []).map((c) => bcrypt.hashSync(c.password, c.salt));
    const compare = (input.compare || []).map((c) => {
        try {
            return bcrypt.compareSync(c.password, c.hash);
        } catch (e) {
            return 'error: ' + e.message;
        }
    });
    process.stdout.write(JSON.stringify({ version, hashes, compare }) + '\n');
});
