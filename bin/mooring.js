#!/usr/bin/env node
'use strict';
// Runs the compiled CLI (`npm run build` makes dist/). From a source checkout without a build,
// `npx tsx src/cli/main.ts` runs the same thing.
require('../dist/src/cli/main.js').main(process.argv);
