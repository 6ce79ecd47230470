package main

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/runtime"
)

// TestScenarioOnSASLBroker runs the command against a broker that requires
// SASL/SCRAM, with the mechanism and user from flags and the password
// from the environment: it must process the load and match the model
// (exit code 0).
func TestScenarioOnSASLBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const pass = "orders-Pa55-for-test"
	br, err := testbroker.Start(testbroker.Options{Extra: []kfake.Opt{
		kfake.EnableSASL(), kfake.Superuser(runtime.SASLScramSHA256, "orders-admin", pass),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	t.Setenv(runtime.EnvSASLPassword, pass)
	code := run([]string{
		"-brokers", strings.Join(br.Addrs(), ","), "-state", t.TempDir(), "-http", "",
		"-count", "3000", "-partitions", "3",
		"-sasl-mechanism", runtime.SASLScramSHA256, "-sasl-user", "orders-admin",
	})
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestSecurityFlags: flags override the environment, and security
// settings without -brokers are refused (the embedded broker is plaintext).
func TestSecurityFlags(t *testing.T) {
	t.Setenv(runtime.EnvSASLMechanism, runtime.SASLPlain)
	t.Setenv(runtime.EnvSASLUser, "env-user")
	cfg, err := parseFlags([]string{"-brokers", "b:9092", "-sasl-user", "flag-user", "-tls-ca", "/etc/ca.pem"})
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.security; s.SASLMechanism != runtime.SASLPlain || s.User != "flag-user" || s.CAFile != "/etc/ca.pem" {
		t.Fatalf("security = %s", s)
	}
	if _, err := parseFlags([]string{"-tls"}); err == nil {
		t.Fatal("TLS without -brokers accepted")
	}
}
