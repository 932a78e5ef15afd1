/**
 * The failure converter used when payloads are encrypted: a failure's message and stack trace are
 * moved into its encoded attributes, so the payload codec encrypts them too (the default leaves
 * them as plain text in the history). Loaded by path (`failureConverterPath`): by the SDK's
 * require() in clients and workers, and by webpack in workflow bundles, so it is plain CommonJS
 * (a .ts file would need a loader in each of those three places).
 */
/* global require, exports */
'use strict';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
