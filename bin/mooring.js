#!/usr/bin/env node
'use strict';
// Runs the compiled CLI. `npm start` (or `npm run build`) makes dist/; from a source checkout without
// a build, `npm run mooring -- <command>` runs the same thing from the TypeScript sources.
const path = require('node:path');
const fs = require('node:fs');

const entry = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
if (!fs.existsSync(entry)) {
  process.stderr.write('mooring: not built yet: run `npm run build` (or `npm start`) first, or use `npm run mooring -- <command>`\n');
  process.exit(1);
}
require(entry).main(process.argv);
