'use strict';

const ENV_KEYS = [
  'AWS_EXECUTION_ENV', '_HANDLER', 'LAMBDA_TASK_ROOT', 'TZ', 'AWS_LAMBDA_FUNCTION_NAME',
  'AWS_LAMBDA_RUNTIME_API', 'GREETING', '_X_AMZN_TRACE_ID', 'NODE_PATH',
];

exports.asyncHandler = async (event, context) => {
  switch (event.action) {
    case 'error':
      throw new Error('boom');
    case 'reject-string':
      return Promise.reject('plain string'); // eslint-disable-line prefer-promise-reject-errors
    case 'undefined':
      return undefined;
    case 'big':
      return 'x'.repeat(event.size);
    case 'log':
      console.log('hello', { a: 1 });
      console.warn('careful');
      return 'logged';
    case 'ctx':
      return {
        requestId: context.awsRequestId,
        functionName: context.functionName,
        functionVersion: context.functionVersion,
        arn: context.invokedFunctionArn,
        memory: context.memoryLimitInMB,
        logGroup: context.logGroupName,
        logStream: context.logStreamName,
        remaining: context.getRemainingTimeInMillis(),
        custom: context.clientContext && context.clientContext.custom,
        identityId: context.identity && context.identity.cognitoIdentityId,
        waits: context.callbackWaitsForEmptyEventLoop,
        env: Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k] ?? null])),
      };
    default:
      return event;
  }
};

exports.cbHandler = (event, context, callback) => {
  switch (event.action) {
    case 'wait':
      setTimeout(() => {}, 800);
      callback(null, 'cb-wait');
      return;
    case 'nowait':
      context.callbackWaitsForEmptyEventLoop = false;
      setTimeout(() => {}, 800);
      callback(null, 'cb-nowait');
      return;
    case 'error':
      callback(new TypeError('bad type'));
      return;
    case 'succeed':
      context.succeed({ via: 'succeed' });
      return;
    case 'fail':
      context.fail(new Error('failed via context'));
      return;
    case 'done':
      context.done(null, 'done-result');
      return;
    case 'never':
      return; // no callback and nothing pending: Lambda answers null
    case 'throw-later':
      setTimeout(() => { throw new RangeError('late'); }, 10);
      return;
    default:
      callback(null, event);
  }
};

exports.nested = { fn: async () => 'nested-ok' };
exports.notfn = 42;
