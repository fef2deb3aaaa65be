// Package hostile is the hostile-function suite: real Python functions that
// attack the sandbox, deployed and invoked through the Lambda API of a real
// `kiln server` (isolated by default). Each test asserts what the function saw and
// that the host and the other sandboxes are unharmed. It needs root (CI
// runs as root) and skips otherwise. It owns no production code.
package hostile
