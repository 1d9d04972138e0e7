// Builds dist/: ESM and CJS for bundlers, the minified script-tag build, the minified snippet
// and the type definitions; prints the script-tag build's gzipped size.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

// Browsers since 2019 (optional chaining, ?? and class fields are lowered).
const target = ['es2019'];
rmSync('dist', { recursive: true, force: true });
const common = { bundle: true, target, legalComments: 'none', logLevel: 'warning' };
await build({ ...common, entryPoints: ['src/index.ts'], format: 'esm', outfile: 'dist/inlet.mjs' });
await build({ ...common, entryPoints: ['src/index.ts'], format: 'cjs', outfile: 'dist/inlet.cjs' });
await build({ ...common, entryPoints: ['src/standalone.ts'], format: 'iife', minify: true, outfile: 'dist/inlet.min.js' });
// The snippet is pasted into pages as it is: no bundle wrapper.
await build({ entryPoints: ['src/snippet.js'], minify: true, target, legalComments: 'none', outfile: 'dist/snippet.min.js' });
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.'], { stdio: 'inherit' });

const script = readFileSync('dist/inlet.min.js');
console.log(`dist/inlet.min.js: ${script.length} bytes, ${gzipSync(script, { level: 9 }).length} gzipped`);
