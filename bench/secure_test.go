package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/choreo-go/choreo/internal/apptest"
	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/internal/testcerts"
	"github.com/choreo-go/choreo/runtime"
)

// benchPass is searched for in the results and the progress output: it
// must never show.
const benchPass = "bench-Pa55word-for-tests-9c1e"

// TestHarnessSecureCluster runs the harness at the tiny scale against an
// external cluster with mutual TLS and SASL/SCRAM (kfake in this process):
// the baselines, W1, W4 with its latency runs, whose load comes from the
// bench/cmd/load child process, which gets the same settings, and W5's
// raw consume and restores. Every client must connect with them, since
// the broker accepts no other.
func TestHarnessSecureCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pki, err := testcerts.New(t.TempDir(), "bench")
	if err != nil {
		t.Fatal(err)
	}
	br, err := testbroker.Start(testbroker.Options{Extra: []kfake.Opt{
		kfake.TLS(pki.ServerTLS()),
		kfake.EnableSASL(),
		kfake.Superuser(runtime.SASLScramSHA512, "bench", benchPass),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	sec := runtime.Security{
		CAFile: pki.CAFile, CertFile: pki.CertFile, KeyFile: pki.KeyFile,
		SASLMechanism: runtime.SASLScramSHA512, User: "bench", Password: benchPass,
	}

	var progress apptest.Buffer
	rep, err := Run(ctx, Options{Scale: Tiny, Out: t.TempDir(), Progress: &progress,
		Workloads: []string{W1, W4, W5}, Brokers: br.Addrs(), Security: sec})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	sz, _ := sizesFor(Tiny)
	for id, want := range map[string]int64{
		basePass: sz.Records, baseState: sz.Records, "w1-alos": sz.Records,
		"w4-alos":     0, // events plus products: checked > 0
		"w5-raw-alos": int64(sz.RestoreKeys), "w5-cold-alos": int64(sz.RestoreKeys), "w5-warm-alos": int64(sz.RestoreTail),
	} {
		r, ok := rep.Row(id)
		if !ok {
			t.Errorf("no row %s", id)
			continue
		}
		if r.Records <= 0 || (want > 0 && r.Records != want) || r.Throughput <= 0 || r.Moved <= 0 {
			t.Errorf("%s: records %d (want %d), throughput %v, moved %d", id, r.Records, want, r.Throughput, r.Moved)
		}
		if r.BrokerCPUPerM != nil {
			t.Errorf("%s: broker CPU %v on an external cluster", id, *r.BrokerCPUPerM)
		}
	}
	if r, ok := rep.Row("w4-alos"); ok && r.Events != int64(sz.OrderEvents) {
		t.Errorf("W4 processed %d events, want %d", r.Events, sz.OrderEvents)
	}
	if len(rep.Latency) != len(sz.Latency) {
		t.Fatalf("%d latency rows, want %d", len(rep.Latency), len(sz.Latency))
	}
	for _, l := range rep.Latency {
		if l.Events <= 0 || l.Outputs != l.Events || !l.Drained {
			t.Errorf("latency run %+v", l)
		}
	}

	md, err := os.ReadFile(filepath.Join(rep.Dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(rep.Dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "external cluster") || !strings.Contains(string(md), "SASL SCRAM-SHA-512") {
		t.Errorf("results.md does not say that an external cluster was used:\n%s", md)
	}
	for what, text := range map[string]string{"results.md": string(md), "results.json": string(js), "progress": progress.String()} {
		if strings.Contains(text, benchPass) {
			t.Errorf("%s shows the password", what)
		}
	}

	// The run leaves none of its topics behind.
	opts, err := sec.ClientOpts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(br.Addrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := td.Names(); len(names) > 0 {
		t.Errorf("topics left on the cluster: %v", names)
	}
}

// TestRunRefusesSecurityWithoutBrokers: the harness's own broker is
// plaintext, so TLS or SASL settings without Brokers are a mistake.
func TestRunRefusesSecurityWithoutBrokers(t *testing.T) {
	_, err := Run(context.Background(), Options{Scale: Tiny, Out: t.TempDir(), Security: runtime.Security{TLS: true}})
	if err == nil || !strings.Contains(err.Error(), "need Brokers") {
		t.Errorf("Run with TLS and no Brokers: %v", err)
	}
}
