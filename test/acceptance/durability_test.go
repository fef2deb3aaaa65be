package acceptance

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// TestSurvivesCrash: what a user created survives a SIGKILL of kiln server.
func TestSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	c := s.client(t)
	createFunction(t, c, "durable", fixtures()[1])
	if _, err := c.PublishVersion(ctx(), &lambda.PublishVersionInput{FunctionName: aws.String("durable")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx(), &lambda.CreateAliasInput{FunctionName: aws.String("durable"), Name: aws.String("prod"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	akid, secret := createAccount(t, s)
	s.kill()

	s2 := startServer(t, dir)
	if s2.akid != s.akid {
		t.Fatalf("admin key changed across restart: %s → %s", s.akid, s2.akid)
	}
	c2 := s2.client(t)
	r := invoke(t, c2, "durable:prod", map[string]any{"action": "echo"})
	if r.FnError != "" || r.Version != "1" {
		t.Fatalf("after restart: %q %s", r.FnError, r.Payload)
	}
	if _, err := s2.clientFor(t, akid, secret).ListFunctions(ctx(), &lambda.ListFunctionsInput{}); err != nil {
		t.Fatalf("second account lost across restart: %v", err)
	}
}
