package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// SignRequest signs r for service in region at time t the way aws-sdk-go-v2
// does, for Kiln's CLI and tests when they send requests the Lambda SDK does
// not build. body is the complete body; if r has no body yet, SignRequest sets
// it (and ContentLength) so the signed content-length matches what is sent.
func SignRequest(ctx context.Context, r *http.Request, body []byte, accessKeyID, secretKey, region, service string, t time.Time) error {
	if (r.Body == nil || r.Body == http.NoBody) && len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: accessKeyID, SecretAccessKey: secretKey}
	return v4.NewSigner().SignHTTP(ctx, creds, r, hex.EncodeToString(sum[:]), service, region, t)
}
