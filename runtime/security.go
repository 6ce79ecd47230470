package runtime

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/choreo-go/choreo/internal/engine"
)

// SASL mechanisms accepted in Security.SASLMechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLOAuthBearer = "OAUTHBEARER"
)

var (
	// ErrNotAuthorized is wrapped by every *AuthorizationError returned by
	// Run: the principal lacks an ACL the app needs (see RequiredACLs). It
	// is never retried: the app stops in the Error state.
	ErrNotAuthorized = engine.ErrNotAuthorized
	// ErrAuthentication is wrapped by the error Run returns when the brokers
	// reject the SASL credentials or a TLS certificate (ours or theirs).
	ErrAuthentication = engine.ErrAuthentication
)

// AuthorizationError names the right the broker denied (or, found by the
// start-up check, would deny): operation, resource type and name.
type AuthorizationError = engine.AuthorizationError

// ACL is one access right the app's principal needs; see RequiredACLs.
type ACL = engine.ACL

// Secret is a string that never shows in print: fmt, log/slog and JSON
// render it as "[redacted]". Use it for passwords.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]".
func (Secret) String() string { return redacted }

// GoString returns "[redacted]", for %#v.
func (Secret) GoString() string { return redacted }

// Format prints "[redacted]" for every verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue makes slog print "[redacted]".
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText makes encoders (JSON, ...) write "[redacted]".
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal returns the secret itself, for the client that sends it.
func (s Secret) Reveal() string { return string(s) }

// Security configures TLS and SASL for every client the app opens
// (consumer, producer, admin, restore). The zero value is a plaintext
// connection without authentication. Printing a Security (fmt, slog)
// shows neither the password nor key material.
type Security struct {
	// TLS enables TLS with the system's root CAs when no CAFile or
	// TLSConfig is given. Setting CAFile, CertFile or TLSConfig enables it too.
	TLS bool
	// TLSConfig is used as is (cloned) when set; the file fields below
	// must then be empty.
	TLSConfig *tls.Config
	// CAFile is a PEM file of the CAs that sign the brokers' certificates.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key, for
	// brokers that authenticate clients by certificate (mutual TLS).
	CertFile, KeyFile string
	// ServerName overrides the host name checked in the brokers'
	// certificates (default: the host of each broker address).
	ServerName string

	// SASLMechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER;
	// empty disables SASL.
	SASLMechanism string
	// User and Password authenticate PLAIN and SCRAM.
	User     string
	Password Secret
	// PasswordFile holds the password (trailing newline ignored) when
	// Password is empty: a mounted secret.
	PasswordFile string
	// TokenSource returns an OAUTHBEARER token; it is called for every new
	// connection, so it may refresh the token.
	TokenSource func(ctx context.Context) (string, error)
}

// Enabled reports whether any TLS or SASL setting is present.
func (s Security) Enabled() bool { return s.tlsOn() || s.SASLMechanism != "" }

func (s Security) tlsOn() bool {
	return s.TLS || s.TLSConfig != nil || s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" || s.ServerName != ""
}

// String describes the settings without secrets.
func (s Security) String() string {
	var parts []string
	if s.tlsOn() {
		t := "TLS"
		if s.TLSConfig != nil {
			t += " (custom config)"
		}
		if s.CAFile != "" {
			t += " ca=" + s.CAFile
		}
		if s.CertFile != "" {
			t += " cert=" + s.CertFile
		}
		if s.ServerName != "" {
			t += " server-name=" + s.ServerName
		}
		parts = append(parts, t)
	}
	if s.SASLMechanism != "" {
		t := "SASL " + s.SASLMechanism
		if s.User != "" {
			t += " user=" + strconv.Quote(s.User)
		}
		if s.Password != "" || s.PasswordFile != "" {
			t += " password=" + redacted
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "plaintext"
	}
	return strings.Join(parts, ", ")
}

// GoString is String: %#v must not dump the TLS keys or the password.
func (s Security) GoString() string { return s.String() }

// Format prints String for every verb, so a Config printed with %v or %+v
// shows no secret (a *tls.Config would otherwise print its private keys).
func (s Security) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue makes slog print String.
func (s Security) LogValue() slog.Value { return slog.StringValue(s.String()) }

// ClientOpts returns the franz-go options for these settings: dial TLS and
// SASL. Use them for your own clients of the same cluster. Errors name
// files and settings, never the password.
func (s Security) ClientOpts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if s.tlsOn() {
		cfg, err := s.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s.SASLMechanism != "" {
		m, err := s.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (s Security) tlsConfig() (*tls.Config, error) {
	if s.TLSConfig != nil {
		if s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" {
			return nil, fmt.Errorf("%w: Security: set TLSConfig or the CA/cert/key files, not both", ErrInvalidConfig)
		}
		cfg := s.TLSConfig.Clone()
		if s.ServerName != "" {
			cfg.ServerName = s.ServerName
		}
		return cfg, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.ServerName}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: Security.CAFile: %w", ErrInvalidConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: Security.CAFile %s holds no PEM certificate", ErrInvalidConfig, s.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return nil, fmt.Errorf("%w: Security: CertFile and KeyFile go together", ErrInvalidConfig)
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			// The error of LoadX509KeyPair describes the PEM blocks, not
			// the key's bytes.
			return nil, fmt.Errorf("%w: Security: client certificate %s / key %s: %w", ErrInvalidConfig, s.CertFile, s.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (s Security) mechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(s.SASLMechanism) {
	case SASLOAuthBearer:
		if s.TokenSource == nil {
			return nil, fmt.Errorf("%w: Security: OAUTHBEARER needs a TokenSource", ErrInvalidConfig)
		}
		src := s.TokenSource
		return oauth.Oauth(func(ctx context.Context) (oauth.Auth, error) {
			tok, err := src(ctx)
			if err != nil {
				return oauth.Auth{}, fmt.Errorf("OAUTHBEARER token source: %w", err)
			}
			return oauth.Auth{Token: tok}, nil
		}), nil
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return nil, fmt.Errorf("%w: Security: unknown SASL mechanism %q (want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)", ErrInvalidConfig, s.SASLMechanism)
	}
	if s.User == "" {
		return nil, fmt.Errorf("%w: Security: SASL %s needs a User", ErrInvalidConfig, s.SASLMechanism)
	}
	pass := s.Password.Reveal()
	if pass == "" && s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: Security.PasswordFile: %w", ErrInvalidConfig, err)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	if pass == "" {
		return nil, fmt.Errorf("%w: Security: SASL %s needs a Password or PasswordFile", ErrInvalidConfig, s.SASLMechanism)
	}
	user := s.User
	switch strings.ToUpper(s.SASLMechanism) {
	case SASLPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	default:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
}

// Environment variables read by SecurityFromEnv.
const (
	EnvTLS              = "CHOREO_TLS"                // "true" enables TLS with the system roots
	EnvTLSCA            = "CHOREO_TLS_CA"             // CA file (PEM)
	EnvTLSCert          = "CHOREO_TLS_CERT"           // client certificate file (PEM)
	EnvTLSKey           = "CHOREO_TLS_KEY"            // client key file (PEM)
	EnvTLSServerName    = "CHOREO_TLS_SERVER_NAME"    // host name expected in broker certificates
	EnvSASLMechanism    = "CHOREO_SASL_MECHANISM"     // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	EnvSASLUser         = "CHOREO_SASL_USER"          // SASL user
	EnvSASLPassword     = "CHOREO_SASL_PASSWORD"      // SASL password
	EnvSASLPasswordFile = "CHOREO_SASL_PASSWORD_FILE" // file holding the SASL password
)

// SecurityFromEnv reads Security from the CHOREO_TLS* and CHOREO_SASL*
// environment variables (see the Env constants). OAUTHBEARER needs a
// TokenSource, which only code can provide.
func SecurityFromEnv() (Security, error) {
	s := Security{
		CAFile:        os.Getenv(EnvTLSCA),
		CertFile:      os.Getenv(EnvTLSCert),
		KeyFile:       os.Getenv(EnvTLSKey),
		ServerName:    os.Getenv(EnvTLSServerName),
		SASLMechanism: os.Getenv(EnvSASLMechanism),
		User:          os.Getenv(EnvSASLUser),
		Password:      Secret(os.Getenv(EnvSASLPassword)),
		PasswordFile:  os.Getenv(EnvSASLPasswordFile),
	}
	if v := os.Getenv(EnvTLS); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return Security{}, fmt.Errorf("%w: %s=%q: want true or false", ErrInvalidConfig, EnvTLS, v)
		}
		s.TLS = on
	}
	return s, nil
}

// RegisterFlags adds -tls, -tls-ca, -tls-cert, -tls-key, -tls-server-name,
// -sasl-mechanism, -sasl-user and -sasl-password-file to fs, with s's
// current values (e.g. from SecurityFromEnv) as defaults. There is
// deliberately no password flag: command lines are visible to every user
// of the machine; pass it in CHOREO_SASL_PASSWORD or a file.
func (s *Security) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&s.TLS, "tls", s.TLS, "connect to the brokers with TLS (env "+EnvTLS+")")
	fs.StringVar(&s.CAFile, "tls-ca", s.CAFile, "PEM file of the CAs of the brokers' certificates (env "+EnvTLSCA+")")
	fs.StringVar(&s.CertFile, "tls-cert", s.CertFile, "PEM client certificate for mutual TLS (env "+EnvTLSCert+")")
	fs.StringVar(&s.KeyFile, "tls-key", s.KeyFile, "PEM client key for mutual TLS (env "+EnvTLSKey+")")
	fs.StringVar(&s.ServerName, "tls-server-name", s.ServerName, "host name expected in the brokers' certificates (env "+EnvTLSServerName+")")
	fs.StringVar(&s.SASLMechanism, "sasl-mechanism", s.SASLMechanism, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (env "+EnvSASLMechanism+")")
	fs.StringVar(&s.User, "sasl-user", s.User, "SASL user (env "+EnvSASLUser+")")
	fs.StringVar(&s.PasswordFile, "sasl-password-file", s.PasswordFile, "file holding the SASL password (env "+EnvSASLPasswordFile+"; or set "+EnvSASLPassword+")")
}

// RequiredACLs lists every ACL the app's principal needs, for this
// topology, ApplicationID, guarantee and error policies: grant exactly
// these and the app runs; with one missing, Run stops with an
// *AuthorizationError naming it. Internal topics (changelogs, repartition
// topics, the default dead-letter topic) and transactional ids are covered
// by prefixed ACLs on "<ApplicationID>-".
func (a *App) RequiredACLs() []ACL { return a.eng.RequiredACLs() }
