import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { importX } from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // No import cycles between our modules (imports of types only do not count: they vanish from the output).
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      // Parse .ts files for their imports (the default is JavaScript only) and resolve './x.js' to './x.ts'.
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/external-module-folders': ['node_modules', 'node_modules/@types'],
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: 'tsconfig.json' })],
    },
    rules: { 'import-x/no-cycle': ['error', { ignoreExternal: true }] },
  },
  {
    // The driver and HTTP/3 get sockets and the clock from an IoRuntime (src/io/runtime.ts), so that tests can run
    // them on a simulated network with a fake clock: only the Node runtime touches node:dgram or real time.
    files: ['src/io/**/*.ts', 'src/h3/**/*.ts'],
    ignores: ['src/io/node-runtime.ts', 'src/io/devcert.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: ['node:dgram', 'dgram', 'node:perf_hooks', 'perf_hooks', 'node:timers', 'timers', 'node:timers/promises'].map((name) => ({ name, message: 'use the IoRuntime (src/io/runtime.ts)' })) },
      ],
      'no-restricted-globals': [
        'error',
        ...['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate', 'performance'].map((name) => ({
          name,
          message: 'use the IoRuntime clock (src/io/runtime.ts)',
        })),
      ],
      'no-restricted-properties': ['error', { object: 'Date', property: 'now', message: 'use the IoRuntime clock (src/io/runtime.ts)' }],
    },
  },
);
