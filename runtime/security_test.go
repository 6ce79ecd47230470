package runtime_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/choreo-go/choreo/runtime"
)

const testPassword = "pw-Top-S3cret-91c2"

// TestSecurityNeverPrintsSecrets prints a Config holding a password and a
// *tls.Config with a private key in every way a user might (fmt verbs,
// slog text and JSON) and checks that neither shows.
func TestSecurityNeverPrintsSecrets(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := runtime.Config{
		Brokers:       []string{"127.0.0.1:1"},
		ApplicationID: "secrets",
		InMemoryState: true,
		Security: runtime.Security{
			TLSConfig:     &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
			SASLMechanism: runtime.SASLScramSHA256,
			User:          "svc",
			Password:      testPassword,
		},
	}
	raw, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// The private scalar as fmt would print it: decimal (big.Int) or hex.
	secrets := []string{testPassword, new(big.Int).SetBytes(raw).String(), fmt.Sprintf("%x", raw)}

	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out = append(out, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, &cfg), fmt.Sprintf(verb, cfg.Security), fmt.Sprintf(verb, cfg.Security.Password))
	}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("config", "cfg", cfg, "security", cfg.Security, "password", cfg.Security.Password)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "security", cfg.Security, "password", cfg.Security.Password)
	out = append(out, text.String(), js.String())
	b, err := json.Marshal(struct{ P runtime.Secret }{cfg.Security.Password})
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(b))
	for _, o := range out {
		for _, s := range secrets {
			if strings.Contains(o, s) {
				t.Fatalf("printed output shows a secret: %.200s", o)
			}
		}
	}
	if s := cfg.Security.String(); !strings.Contains(s, "SCRAM-SHA-256") || !strings.Contains(s, `user="svc"`) || !strings.Contains(s, "[redacted]") {
		t.Errorf("Security.String() = %q, want the mechanism, the user and a redacted password", s)
	}
	if cfg.Security.Password.Reveal() != testPassword {
		t.Error("Reveal does not return the password")
	}
}

// TestSecurityInvalid: bad settings are configuration errors from New,
// naming the setting and never the password.
func TestSecurityInvalid(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, sec := range map[string]runtime.Security{
		"unknown mechanism":      {SASLMechanism: "GSSAPI", User: "u", Password: testPassword},
		"no user":                {SASLMechanism: runtime.SASLPlain, Password: testPassword},
		"no password":            {SASLMechanism: runtime.SASLScramSHA512, User: "u"},
		"missing password file":  {SASLMechanism: runtime.SASLScramSHA512, User: "u", PasswordFile: filepath.Join(dir, "none")},
		"oauth without a source": {SASLMechanism: runtime.SASLOAuthBearer},
		"CA not PEM":             {CAFile: notPEM, SASLMechanism: runtime.SASLPlain, User: "u", Password: testPassword},
		"cert without key":       {CertFile: notPEM},
		"config and files":       {TLSConfig: &tls.Config{}, CAFile: notPEM},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runtime.New(countTopology(), runtime.Config{Brokers: []string{"127.0.0.1:1"}, ApplicationID: "x", InMemoryState: true, Security: sec})
			if !errors.Is(err, runtime.ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

// TestSecurityOAuthBearerWiring: the embedded broker has no OAUTHBEARER,
// so check the wiring: the client's SASL mechanism is OAUTHBEARER and its
// first message carries the token from TokenSource.
func TestSecurityOAuthBearerWiring(t *testing.T) {
	calls := 0
	sec := runtime.Security{TLS: true, SASLMechanism: runtime.SASLOAuthBearer, TokenSource: func(context.Context) (string, error) {
		calls++
		return "tok-from-source", nil
	}}
	opts, err := sec.ClientOpts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers("127.0.0.1:1"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if tc, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); tc == nil {
		t.Error("TLS not enabled on the client")
	}
	mechs, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	if len(mechs) != 1 || mechs[0].Name() != "OAUTHBEARER" {
		t.Fatalf("SASL mechanisms = %v", mechs)
	}
	_, first, err := mechs[0].Authenticate(context.Background(), "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(first, []byte("auth=Bearer tok-from-source")) || calls != 1 {
		t.Fatalf("first OAUTHBEARER message %q after %d token calls", first, calls)
	}

	failing := runtime.Security{SASLMechanism: runtime.SASLOAuthBearer, TokenSource: func(context.Context) (string, error) {
		return "", errors.New("identity provider down")
	}}
	opts, err = failing.ClientOpts()
	if err != nil {
		t.Fatal(err)
	}
	cl2, err := kgo.NewClient(append(opts, kgo.SeedBrokers("127.0.0.1:1"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	mechs, _ = cl2.OptValue(kgo.SASL).([]sasl.Mechanism)
	if _, _, err := mechs[0].Authenticate(context.Background(), "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "identity provider down") {
		t.Fatalf("token source error not passed on: %v", err)
	}
}

// TestSecurityFromEnvAndFlags: the environment sets the defaults, flags
// override them, the password comes from the environment or a file.
func TestSecurityFromEnvAndFlags(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(runtime.EnvTLSServerName, "kafka.internal")
	t.Setenv(runtime.EnvSASLMechanism, runtime.SASLScramSHA512)
	t.Setenv(runtime.EnvSASLUser, "env-user")
	t.Setenv(runtime.EnvSASLPassword, "")
	t.Setenv(runtime.EnvSASLPasswordFile, pwFile)
	t.Setenv(runtime.EnvTLS, "true")
	sec, err := runtime.SecurityFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	fset := flag.NewFlagSet("t", flag.ContinueOnError)
	sec.RegisterFlags(fset)
	if err := fset.Parse([]string{"-sasl-user", "flag-user"}); err != nil {
		t.Fatal(err)
	}
	if !sec.TLS || sec.ServerName != "kafka.internal" || sec.User != "flag-user" || sec.PasswordFile != pwFile || sec.SASLMechanism != runtime.SASLScramSHA512 {
		t.Fatalf("security = %s", sec)
	}
	if fset.Lookup("sasl-password") != nil {
		t.Error("a password flag exists: passwords must not go on the command line")
	}
	if _, err := sec.ClientOpts(); err != nil {
		t.Fatalf("ClientOpts with the password file: %v", err)
	}
	t.Setenv(runtime.EnvTLS, "maybe")
	if _, err := runtime.SecurityFromEnv(); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Fatalf("CHOREO_TLS=maybe: %v", err)
	}
}

// TestStateDirOwnerOnly: the state directory tree the app creates (state
// dir, app dir, task dirs) is owner-only, and so is the instance-id file.
func TestStateDirOwnerOnly(t *testing.T) {
	c := newCluster(t)
	c.createTopic("in", 2)
	c.createTopic("out", 2)
	want := produceCounts(c, 0, 200, 10)
	root := t.TempDir()
	stateDir := filepath.Join(root, "nested", "state")
	cfg := c.config(stateDir, "")
	app, err := runtime.New(countTopology(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, app)
	eventually(t, 30*time.Second, "counts", equalCounts(c, want))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dirs := 0
	err = filepath.WalkDir(filepath.Join(root, "nested"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs++
			if perm := info.Mode().Perm(); perm&0o077 != 0 {
				t.Errorf("directory %s has mode %v, want owner-only", path, perm)
			}
		case d.Name() == "instance-id":
			if perm := info.Mode().Perm(); perm != 0o600 {
				t.Errorf("instance-id has mode %v, want 0600", perm)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "count-app", "instance-id")); err != nil {
		t.Fatalf("no instance-id file: %v", err)
	}
	// nested, state, count-app and at least one task directory.
	if dirs < 4 {
		t.Fatalf("only %d directories under the state dir", dirs)
	}
}
