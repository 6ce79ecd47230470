package main

import (
	"testing"

	"github.com/choreo-go/choreo/runtime"
)

// TestSecurityNeedsBrokers: TLS or SASL settings, from flags or the
// environment, without -brokers are refused as bad usage (exit 2): the
// bench's own broker is plaintext.
func TestSecurityNeedsBrokers(t *testing.T) {
	if code := run([]string{"-tls", "-scale", "tiny"}); code != 2 {
		t.Errorf("-tls without -brokers: exit %d, want 2", code)
	}
	t.Setenv(runtime.EnvSASLMechanism, runtime.SASLScramSHA512)
	if code := run([]string{"-scale", "tiny"}); code != 2 {
		t.Errorf("%s without -brokers: exit %d, want 2", runtime.EnvSASLMechanism, code)
	}
}
