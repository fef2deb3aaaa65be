package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/smithy-go"
)

const accountAbout = `Creates a new Kiln account and prints its keys as a block for an AWS shared
credentials file (~/.aws/credentials or ./.kiln/credentials). Only the admin
account may do this; its credentials are found the usual way (AWS_PROFILE
selects a profile, since --profile here names the new block).`

// accountCreated is the reply of POST /2026-01-01/kiln/accounts.
type accountCreated struct {
	AccountID       string `json:"AccountId"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
}

func runAccount(ctx context.Context, e *env, args []string) int {
	if len(args) > 0 && args[0] == "create" {
		return runAccountCreate(ctx, e, args[1:])
	}
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help") {
		fmt.Fprint(e.stdout, "Usage: kiln account create [flags]\n\nSubcommands:\n  create    create an account and print its credentials\n")
		return exitOK
	}
	fmt.Fprint(e.stderr, "kiln account: missing or unknown subcommand\nUsage: kiln account create [flags]\n")
	return exitUsage
}

func newAccountCreateCommand() (*command, *string) {
	cmd := newCommand("account create", "account create [--profile NAME] [flags]", accountAbout, 0, 0, false)
	profile := cmd.fs.String("profile", "", "`name` of the printed profile block (default kiln-ACCOUNTID)")
	return cmd, profile
}

func runAccountCreate(ctx context.Context, e *env, args []string) int {
	cmd, p := newAccountCreateCommand()
	if _, code, done := cmd.parse(e, args); done {
		return code
	}
	profile := *p
	if strings.ContainsAny(profile, "[]\r\n") {
		return cmd.usageError(e, "--profile %q: a profile name cannot contain brackets or line breaks", profile)
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	b, err := c.kilnRequest(ctx, "CreateAccount", http.MethodPost,
		[]string{"2026-01-01", "kiln", "accounts"}, nil, []byte("{}"))
	if err != nil {
		return e.fail("CreateAccount", err)
	}
	acct, err := parseAccountCreated(b)
	if err != nil {
		return e.fail("CreateAccount", &smithy.OperationError{ServiceID: "Lambda", OperationName: "CreateAccount", Err: err})
	}
	writeProfile(e.stdout, profile, acct)
	fmt.Fprintf(e.stderr, "Append this block to ~/.aws/credentials or ./.kiln/credentials and use it with --profile %s.\n",
		blockName(profile, acct))
	return exitOK
}

func parseAccountCreated(b []byte) (accountCreated, error) {
	var a accountCreated
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("decode reply: %w", err)
	}
	if a.AccountID == "" || a.AccessKeyID == "" || a.SecretAccessKey == "" {
		return a, errors.New("decode reply: AccountId, AccessKeyId or SecretAccessKey missing")
	}
	for _, v := range []string{a.AccountID, a.AccessKeyID, a.SecretAccessKey} {
		if strings.ContainsAny(v, "[]\r\n= \t") {
			return a, errors.New("decode reply: a field holds characters not allowed in a credentials file")
		}
	}
	return a, nil
}

// writeProfile prints the account as a shared-credentials profile block;
// aws_account_id is read by the AWS SDKs, and the comment says what it is.
func writeProfile(w io.Writer, profile string, a accountCreated) {
	fmt.Fprintf(w, "# Kiln account %s\n[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_account_id = %s\n",
		a.AccountID, blockName(profile, a), a.AccessKeyID, a.SecretAccessKey, a.AccountID)
}

// blockName is the profile name chosen with --profile, else kiln-ACCOUNTID.
func blockName(profile string, a accountCreated) string {
	if profile == "" {
		return "kiln-" + a.AccountID
	}
	return profile
}
