package outagetest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBrokerProcessSurvivesKill9 checks the helper: the broker program
// killed with SIGKILL comes back on the same port with its data.
func TestBrokerProcessSurvivesKill9(t *testing.T) {
	p := StartBroker(t, BrokerOptions{})
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Addrs()...), kgo.DefaultProduceTopic("t"),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(string(rune('a'+i)))).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	pid := p.Pid()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", p.Addrs()[0], time.Second); err == nil {
		_ = c.Close()
		t.Fatal("the port still accepts connections after kill -9")
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if p.Pid() == pid || p.Pid() == 0 {
		t.Fatalf("pid %d after restart (was %d)", p.Pid(), pid)
	}
	// The same client, without being recreated, reads everything back.
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("t", 0); o.Offset != 10 {
		t.Fatalf("end offset after kill -9 and restart = %d, want 10", o.Offset)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
}
