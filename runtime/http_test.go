package runtime_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/runtime"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAppHandlerProbesAndTopology(t *testing.T) {
	// DataDir: the restarted broker keeps its topics, offsets and groups.
	c := newClusterWith(t, testbroker.Options{DataDir: t.TempDir()})
	c.createTopic("in", 2)
	c.createTopic("out", 2)
	app, err := runtime.New(countTopology(), c.config(t.TempDir(), "i1"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()

	if code, _ := get(t, srv, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before Run = %d, want 503", code)
	}
	if code, _ := get(t, srv, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before Run = %d, want 200", code)
	}
	stop := running(t, app)
	eventually(t, 30*time.Second, "ready", func() (bool, string) {
		code, body := get(t, srv, "/readyz")
		return code == http.StatusOK, body
	})
	var pb struct {
		State string `json:"state"`
		Ready bool   `json:"ready"`
	}
	_, body := get(t, srv, "/readyz")
	// Ready covers RUNNING and a rebalance after the first assignment.
	if err := json.Unmarshal([]byte(body), &pb); err != nil || (pb.State != "RUNNING" && pb.State != "REBALANCING") || !pb.Ready {
		t.Fatalf("/readyz body %q", body)
	}

	code, js := get(t, srv, "/topology")
	if code != http.StatusOK || !strings.Contains(js, `"count-app-counts-changelog"`) {
		t.Fatalf("/topology = %d %s", code, js)
	}
	if code, mm := get(t, srv, "/topology?format=mermaid"); code != http.StatusOK || !strings.HasPrefix(mm, "flowchart") {
		t.Fatalf("/topology?format=mermaid = %d %s", code, mm)
	}
	if code, txt := get(t, srv, "/topology?format=text"); code != http.StatusOK || !strings.Contains(txt, "Sub-topology: 0") {
		t.Fatalf("/topology?format=text = %d %s", code, txt)
	}
	if code, _ := get(t, srv, "/topology?format=xml"); code != http.StatusBadRequest {
		t.Fatalf("/topology?format=xml = %d, want 400", code)
	}

	// Readiness drops while the broker is away and comes back with it.
	c.broker.Stop()
	eventually(t, 30*time.Second, "not ready during the outage", func() (bool, string) {
		code, body := get(t, srv, "/readyz")
		return code == http.StatusServiceUnavailable, fmt.Sprint(code, body)
	})
	if code, _ := get(t, srv, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz during an outage = %d, want 200 (alive)", code)
	}
	if err := c.broker.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "ready again", func() (bool, string) {
		code, body := get(t, srv, "/readyz")
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	// And it processes again.
	want := produceCounts(c, 0, 200, 10)
	eventually(t, 60*time.Second, "counts after the outage", equalCounts(c, want))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
