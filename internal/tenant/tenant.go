package tenant

import "context"

// ctxKey is unexported so that no other package can set or overwrite the
// account except through WithAccount.
type ctxKey struct{}

// WithAccount returns a copy of ctx that carries accountID as the caller.
func WithAccount(ctx context.Context, accountID string) context.Context {
	return context.WithValue(ctx, ctxKey{}, accountID)
}

// Account returns the caller's account id. ok is false when the context
// carries none or an empty one, so callers can never mistake "" for an account.
func Account(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(ctxKey{}).(string)
	return id, ok && id != ""
}
