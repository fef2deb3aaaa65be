import { randomBytes } from 'node:crypto';

const INSTANCE = randomBytes(16).toString('hex');

export const handler = async (event, context) => {
  const action = (event && event.action) || 'echo';
  if (action === 'error') throw new RangeError('boom: ' + (event.msg || ''));
  if (action === 'sleep') await new Promise((r) => setTimeout(r, event.ms || 0));
  console.log('esm saw ' + action);
  return {
    runtime: 'nodejs-esm',
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
};
