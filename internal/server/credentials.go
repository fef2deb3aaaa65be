package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kiln-dev/kiln/internal/controlplane"
)

// ensureAdmin creates the first (admin) account on first start and keeps the
// AWS-format credentials and config files in the data dir.
func (s *Server) ensureAdmin(ctx context.Context) (controlplane.Account, bool, error) {
	var admin controlplane.Account
	created := false
	for _, a := range s.cp.Accounts() {
		if a.Admin {
			admin = a
			break
		}
	}
	if admin.ID == "" {
		var err error
		admin, err = s.cp.CreateAccount(ctx, true)
		if err != nil {
			return admin, false, fmt.Errorf("server: create admin account: %w", err)
		}
		created = true
	}
	creds := filepath.Join(s.cfg.DataDir, "credentials")
	if _, err := os.Stat(creds); created || os.IsNotExist(err) {
		body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", admin.AccessKeyID, admin.SecretAccessKey)
		if err := writeFileAtomic(creds, []byte(body), 0o600); err != nil {
			return admin, created, err
		}
	}
	conf := filepath.Join(s.cfg.DataDir, "config")
	if _, err := os.Stat(conf); os.IsNotExist(err) {
		body := fmt.Sprintf("[default]\nregion = %s\noutput = json\n", s.cfg.Region)
		if err := writeFileAtomic(conf, []byte(body), 0o600); err != nil {
			return admin, created, err
		}
	}
	return admin, created, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

func (s *Server) banner(admin controlplane.Account, created bool) {
	d := s.cfg.DataDir
	if rel, err := filepath.Rel(mustGetwd(), d); err == nil && len(rel) < len(d) {
		d = rel
	}
	endpoint := "http://" + s.Addr()
	if created {
		fmt.Fprintf(s.cfg.Out, "Created account %s; its keys are in %s/credentials (profile default).\n", admin.ID, d)
	}
	fmt.Fprintf(s.cfg.Out, `Kiln is serving the AWS Lambda API on %s (account %s, region %s).
Use it with the AWS CLI:
  export AWS_SHARED_CREDENTIALS_FILE=%s/credentials AWS_CONFIG_FILE=%s/config
  aws lambda list-functions --endpoint-url %s
or with kiln itself:
  kiln deploy hello ./fn --runtime python3.12 --handler app.handler
  kiln invoke hello '{"name":"kiln"}'
`, endpoint, admin.ID, s.cfg.Region, d, d, endpoint)
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}
