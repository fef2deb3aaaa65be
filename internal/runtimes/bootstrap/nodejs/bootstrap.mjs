// Kiln's bootstrap for the nodejs runtimes.
//
// It speaks the Lambda Runtime API (2018-06-01) at $AWS_LAMBDA_RUNTIME_API,
// loads the handler named by $_HANDLER from $LAMBDA_TASK_ROOT (CommonJS or ES
// module) and runs one invocation at a time. Node's standard library only.

import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import util from 'node:util';

const require = createRequire(import.meta.url);
const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';

// ---- Runtime API client -----------------------------------------------------

const apiAddress = process.env.AWS_LAMBDA_RUNTIME_API || '';
const apiSep = apiAddress.lastIndexOf(':');
const apiHost = apiAddress.slice(0, apiSep).replace(/^\[|\]$/g, '') || '127.0.0.1';
const apiPort = Number(apiAddress.slice(apiSep + 1));
// One persistent connection; /next has no timeout because a sandbox may stay idle for long.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function apiRequest(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const h = headers || {};
    if (body !== undefined) {
      h['Content-Length'] = Buffer.byteLength(body);
    }
    const req = http.request(
      { host: apiHost, port: apiPort, method, path: urlPath, agent, headers: h },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function apiPost(urlPath, body, errorType) {
  const headers = { 'Content-Type': 'application/json' };
  if (errorType && /^[\x20-\x7e]+$/.test(errorType)) {
    headers[ERROR_TYPE_HEADER] = errorType;
  }
  const res = await apiRequest('POST', urlPath, body, headers);
  if (res.status !== 202) {
    // The invocation is concluded on the platform's side either way (e.g. 413
    // for an oversized response): report it and go on.
    process.stderr.write(`Runtime API answered ${res.status} to POST ${urlPath}: ${res.body.toString().slice(0, 200)}\n`);
  }
}

// ---- logging ------------------------------------------------------------------

let currentRequestId; // undefined outside an invoke, as Lambda prints it

function patchConsole() {
  const write = (level, args) => {
    process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args)}\n`);
  };
  console.log = (...a) => write('INFO', a);
  console.info = (...a) => write('INFO', a);
  console.warn = (...a) => write('WARN', a);
  console.error = (...a) => write('ERROR', a);
  console.debug = (...a) => write('DEBUG', a);
  console.trace = (...a) => {
    const e = { name: 'Trace', message: util.format(...a) };
    Error.captureStackTrace(e, console.trace);
    write('TRACE', [e.stack]);
  };
}

// ---- errors -------------------------------------------------------------------

function isError(e) {
  return util.types.isNativeError(e) ||
    (e !== null && typeof e === 'object' && typeof e.name === 'string' && typeof e.message === 'string');
}

// Lambda's Node error shape: {errorType, errorMessage, trace}.
function toRapidResponse(e) {
  try {
    if (isError(e)) {
      return {
        errorType: e.name,
        errorMessage: e.message,
        trace: typeof e.stack === 'string' ? e.stack.split('\n') : [],
      };
    }
    return { errorType: typeof e, errorMessage: String(e), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      trace: [],
    };
  }
}

function logError(label, r) {
  console.error(label, JSON.stringify({ errorType: r.errorType, errorMessage: r.errorMessage, stack: r.trace }));
}

// A runtime failure whose name is a Lambda error type, e.g. Runtime.ImportModuleError.
class RuntimeError extends Error {
  constructor(type, message, cause) {
    super(message);
    this.name = type;
    if (cause && typeof cause.stack === 'string') {
      // Keep the user's frames: they say where the failure happened.
      const frames = cause.stack.split('\n').filter((l) => /^\s+at /.test(l));
      this.stack = [`${type}: ${message}`, ...frames].join('\n');
    }
  }
}

function causeText(e) {
  return isError(e) ? `${e.name}: ${e.message}` : String(e);
}

// ---- handler loading ------------------------------------------------------------

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

// Does the package.json nearest to dir (not above root) say "type": "module"?
function typeModule(dir, root) {
  for (let d = dir; ; d = path.dirname(d)) {
    const pj = path.join(d, 'package.json');
    if (isFile(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    if (d === root || path.dirname(d) === d) {
      return false;
    }
  }
}

async function importFile(file) {
  return import(pathToFileURL(file).href);
}

function requireFile(file) {
  try {
    return require(file);
  } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') {
      return importFile(file);
    }
    throw e;
  }
}

async function loadModule(taskRoot, moduleRoot, moduleName) {
  const base = path.resolve(taskRoot, moduleRoot, moduleName);
  if (isFile(base)) {
    return requireFile(base);
  }
  const esm = typeModule(path.dirname(base), taskRoot);
  if (isFile(base + '.js')) {
    return esm ? importFile(base + '.js') : requireFile(base + '.js');
  }
  if (isFile(base + '.mjs')) {
    return importFile(base + '.mjs');
  }
  if (isFile(base + '.cjs')) {
    return requireFile(base + '.cjs');
  }
  // A directory with index.js, or a package: let Node resolve it (and word
  // the error as Lambda does when nothing matches).
  return require(moduleName);
}

async function loadHandler(taskRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new RuntimeError('Runtime.MalformedHandlerName',
      "'../' not allowed in handler name. Relative paths are not supported.");
  }
  const moduleAndHandler = path.basename(fullHandler);
  const moduleRoot = fullHandler.slice(0, fullHandler.length - moduleAndHandler.length);
  const m = moduleAndHandler.match(/^([^.]*)\.(.*)$/);
  if (!m || !m[1] || !m[2]) {
    throw new RuntimeError('Runtime.MalformedHandlerName', 'Bad handler');
  }
  const [, moduleName, handlerPath] = m;
  let mod;
  try {
    mod = await loadModule(taskRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new RuntimeError('Runtime.ImportModuleError', causeText(e), e);
    }
    if (e instanceof SyntaxError) {
      throw new RuntimeError('Runtime.UserCodeSyntaxError', causeText(e), e);
    }
    throw e;
  }
  let fn = handlerPath.split('.').reduce((o, k) => (o == null ? undefined : o[k]), mod);
  if (fn === undefined && mod && mod.default && typeof mod.default === 'object') {
    // A CommonJS module loaded through import(): its exports are under default.
    fn = handlerPath.split('.').reduce((o, k) => (o == null ? undefined : o[k]), mod.default);
  }
  if (fn === undefined || fn === null) {
    throw new RuntimeError('Runtime.HandlerNotFound', `${fullHandler} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw new RuntimeError('Runtime.HandlerNotFound', `${fullHandler} is not a function`);
  }
  return fn;
}

// ---- invocations ------------------------------------------------------------------

// The invoke in progress, so process-level error handlers can report to it.
let current = null;
// What to do when the event loop drains (callbackWaitsForEmptyEventLoop).
let onEmptyLoop = null;
let initDone = false;

process.on('beforeExit', () => {
  const f = onEmptyLoop;
  onEmptyLoop = null;
  if (f) {
    f();
  }
});

function parseJSONHeader(v) {
  return v ? JSON.parse(v) : undefined;
}

function invokeOnce(res, handler) {
  return new Promise((resolveInvoke) => {
    const h = res.headers;
    const requestId = h['lambda-runtime-aws-request-id'] || '';
    const deadline = Number(h['lambda-runtime-deadline-ms'] || 0);
    currentRequestId = requestId;
    if (h['lambda-runtime-trace-id']) {
      process.env._X_AMZN_TRACE_ID = h['lambda-runtime-trace-id'];
    } else {
      delete process.env._X_AMZN_TRACE_ID;
    }

    let done = false;
    let waitForEmptyLoop = true;
    const finish = (p) => p.then(() => {
        current = null;
        resolveInvoke();
      }, (e) => {
        // The Runtime API refused or vanished: nothing sensible is left to do.
        process.stderr.write(`runtime API error: ${e && e.stack ? e.stack : e}\n`);
        process.exit(1);
      });
    const postError = (err) => {
      if (done) {
        return Promise.resolve();
      }
      done = true;
      onEmptyLoop = null;
      const r = toRapidResponse(err);
      logError('Invoke Error', r);
      return finish(apiPost(`${API_PREFIX}/invocation/${requestId}/error`, JSON.stringify(r), r.errorType));
    };
    const postResult = (result) => {
      if (done) {
        return;
      }
      let body;
      try {
        body = JSON.stringify(result === undefined ? null : result);
      } catch (e) {
        postError(new RuntimeError('Runtime.SerializationError', `Unable to stringify response body: ${e.message}`));
        return;
      }
      done = true;
      onEmptyLoop = null;
      finish(apiPost(`${API_PREFIX}/invocation/${requestId}/response`, body === undefined ? 'null' : body));
    };
    const callback = (err, result) => {
      if (done) {
        console.warn('Invocation has already been reported as done. Cannot call complete more than once per invocation.');
        return;
      }
      if (err !== undefined && err !== null) {
        postError(err);
      } else if (!waitForEmptyLoop) {
        postResult(result);
      } else {
        onEmptyLoop = () => setImmediate(() => postResult(result));
      }
    };
    const doneFn = (err, result) => {
      waitForEmptyLoop = false;
      callback(err, result);
    };
    current = { postError };

    const env = process.env;
    let context;
    let event;
    try {
      context = {
        get callbackWaitsForEmptyEventLoop() {
          return waitForEmptyLoop;
        },
        set callbackWaitsForEmptyEventLoop(v) {
          waitForEmptyLoop = Boolean(v);
        },
        succeed: (result) => doneFn(null, result),
        fail: (err) => doneFn(err === undefined || err === null ? 'handled' : err, null),
        done: doneFn,
        functionName: env.AWS_LAMBDA_FUNCTION_NAME,
        functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
        invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
        memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
        awsRequestId: requestId,
        logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
        logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
        identity: parseJSONHeader(h['lambda-runtime-cognito-identity']),
        clientContext: parseJSONHeader(h['lambda-runtime-client-context']),
        getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
      };
      event = res.body.length ? JSON.parse(res.body.toString('utf8')) : {};
    } catch (e) {
      postError(e);
      return;
    }

    // A handler that never answers and leaves nothing pending returns null, as in Lambda.
    onEmptyLoop = () => postResult(null);
    try {
      const r = handler(event, context, callback);
      if (r && typeof r.then === 'function') {
        r.then(context.succeed, context.fail);
      }
    } catch (e) {
      callback(e);
    }
  });
}

function onFatal(exitCode, label, err) {
  const r = toRapidResponse(err);
  logError(label, r);
  let p;
  if (current) {
    const c = current;
    current = null;
    p = c.postError(err);
  } else if (!initDone) {
    p = apiPost(`${API_PREFIX}/init/error`, JSON.stringify(r), r.errorType);
  } else {
    p = Promise.resolve();
  }
  p.then(() => process.exit(exitCode), () => process.exit(exitCode));
}

process.on('uncaughtException', (err) => onFatal(129, 'Uncaught Exception', err));
process.on('unhandledRejection', (reason) => {
  const e = new RuntimeError('Runtime.UnhandledPromiseRejection', String(reason && reason.stack ? `${reason.name}: ${reason.message}` : reason), reason);
  onFatal(128, 'Unhandled Promise Rejection', e);
});

async function main() {
  patchConsole();
  const taskRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const fullHandler = process.argv[2] || process.env._HANDLER || '';
  let handler;
  try {
    handler = await loadHandler(taskRoot, fullHandler);
  } catch (e) {
    const r = toRapidResponse(e);
    logError('Uncaught Exception', r);
    try {
      await apiPost(`${API_PREFIX}/init/error`, JSON.stringify(r), r.errorType);
    } finally {
      process.exit(129);
    }
  }
  initDone = true;
  for (;;) {
    const res = await apiRequest('GET', `${API_PREFIX}/invocation/next`);
    if (res.status !== 200) {
      throw new Error(`GET /next answered ${res.status}: ${res.body.toString().slice(0, 200)}`);
    }
    await invokeOnce(res, handler);
  }
}

main().catch((e) => {
  process.stderr.write(`bootstrap: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
