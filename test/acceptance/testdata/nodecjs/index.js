const crypto = require('crypto');
const INSTANCE = crypto.randomBytes(16).toString('hex');

function result(event, context) {
  return {
    runtime: 'nodejs-cjs',
    instance: INSTANCE,
    event,
    request_id: context.awsRequestId,
    function_name: context.functionName,
    function_version: context.functionVersion,
    arn: context.invokedFunctionArn,
    memory: Number(context.memoryLimitInMB),
    remaining: context.getRemainingTimeInMillis(),
    log_group: context.logGroupName,
    log_stream: context.logStreamName,
    env: process.env.GREETING || null,
    region: process.env.AWS_REGION,
    handler_env: process.env._HANDLER,
  };
}

exports.handler = async (event, context) => {
  const action = (event && event.action) || 'echo';
  if (action === 'error') throw new TypeError('boom: ' + (event.msg || ''));
  if (action === 'sleep') await new Promise((r) => setTimeout(r, event.ms || 0));
  console.log('node saw ' + action);
  return result(event, context);
};

// A callback-style handler, as older Node functions are written.
exports.callback = (event, context, callback) => {
  if (event && event.action === 'error') {
    callback(new Error('callback boom'));
    return;
  }
  setTimeout(() => callback(null, result(event, context)), 5);
};
