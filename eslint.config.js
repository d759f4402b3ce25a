// ESLint: the recommended JavaScript rules and typescript-eslint's strict type-checked set over the
// controller, the CI scripts, the tests and codegen. `npm run lint`; ci/test.ts runs it before vitest.
// A rule turned off or loosened here says why in one line; prefer fixing the code.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    ignores: ['**/node_modules/**', '**/dist/**', 'controller/src/api/generated.ts', 'codegen/testdata/**'],
  },
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // With noUncheckedIndexedAccess off and every field of @kubernetes/client-node's models optional, `!` states
      // what the API server guarantees (metadata.name of a stored object, a status the test just waited for).
      '@typescript-eslint/no-non-null-assertion': 'off',
      // @kubernetes/client-node declares its API models as classes, and takes and returns plain object literals.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      // Numbers and booleans read well in messages; objects, undefined and unknown still need an explicit form.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // `() => void work()` style callbacks that return a void call are clear; statements elsewhere still count.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // An async function without await still turns a throw into a rejection, as a Promise-returning interface promises.
      '@typescript-eslint/require-await': 'off',
      // With noUncheckedIndexedAccess off, the types say an indexed value is always there: the rule flags the checks
      // that guard it. Turn it back on together with noUncheckedIndexedAccess.
      '@typescript-eslint/no-unnecessary-condition': 'off',
      // A caught error (unknown) or an abort reason (any) passes on as it came.
      '@typescript-eslint/prefer-promise-reject-errors': [
        'error',
        { allowThrowingAny: true, allowThrowingUnknown: true },
      ],
      // A timer handle declared before the callback that clears it and assigned after cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // A leading underscore marks what is left out on purpose; a rest sibling drops the keys it names.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Tests read parsed YAML, JSON and API answers (typed any), and build malformed input on purpose; their
    // assertions check the shape themselves.
    files: ['**/*.test.ts', 'test/**', 'controller/src/reconcile/testing/**'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      // Typed reads of a fake store: cluster.read<Deployment>(...).
      '@typescript-eslint/no-unnecessary-type-parameters': 'off',
      // Fixtures copy @kubernetes/client-node's models (declared as classes, used as plain objects) with spreads.
      '@typescript-eslint/no-misused-spread': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },
  {
    // The tools' CRD cache is keyed on this file's text (crdsDir): an edit for lint alone would re-extract the CRDs.
    // Typed when the file next changes for a reason of its own.
    files: ['ci/tools/build.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },
  {
    // The two plain JavaScript launchers run before any TypeScript is available: no type information.
    files: ['**/*.mjs', '**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
