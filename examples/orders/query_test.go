package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/runtime"
)

// TestPortfolioEndpointTwoInstances runs two instances of the example, each
// with its HTTP server advertised to the group, and asks both for every
// customer's portfolio: the owner answers 200 with the model's portfolio,
// the other redirects (307) to the owner's address, and following the
// redirect gives the portfolio. A customer with no portfolio gets 404 from
// its owner.
func TestPortfolioEndpointTwoInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	ctx := testContext(t, 120*time.Second)
	br, cl, _ := startBroker(ctx, t)

	gen := orders.DefaultOptions(5)
	gen.Lines, gen.Customers = 3000, 200
	if err := orders.Produce(ctx, cl, gen, nil); err != nil {
		t.Fatal(err)
	}

	type server struct {
		id, addr string
		app      *runtime.App
	}
	start := func(id string) *server {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b := runtime.NewBuilder()
		portfolios := orders.Topology(b)
		app, err := runtime.New(b, runtime.Config{
			Brokers:           br.Addrs(),
			ApplicationID:     orders.AppID,
			InstanceID:        id,
			StateDir:          t.TempDir(),
			SessionTimeout:    5 * time.Second,
			CommitInterval:    200 * time.Millisecond,
			ApplicationServer: advertised("127.0.0.1:0", ln),
			Logger:            testLogger(id),
		})
		if err != nil {
			t.Fatal(err)
		}
		q, err := runtime.Query(app, portfolios)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: newHandler(app, q, testLogger(id)), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- app.Run(runCtx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Run: %v", id, err)
			}
			_ = srv.Close()
		})
		return &server{id: id, addr: ln.Addr().String(), app: app}
	}
	a, b := start("a"), start("b")
	servers := []*server{a, b}
	byAddr := map[string]*server{a.addr: a, b.addr: b}

	if err := orders.WaitProcessed(ctx, cl, orders.AppID, orders.SourceTopics(orders.AppID)); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, 60*time.Second, "both instances running with tasks", func() (bool, string) {
		info := br.Cluster().GroupInfo(orders.AppID)
		if info == nil {
			return false, "no group"
		}
		withTasks := 0
		for _, m := range info.Members {
			if len(m.Assignment) > 0 {
				withTasks++
			}
		}
		return info.State == "Stable" && withTasks == 2 && a.app.State() == runtime.Running && b.app.State() == runtime.Running,
			fmt.Sprintf("group %s, %d members with tasks, states %v %v", info.State, withTasks, a.app.State(), b.app.State())
	})
	in, err := orders.ReadInputs(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	want := orders.Model(in)
	if len(want) < 100 {
		t.Fatalf("model has %d customers: the load is too small to spread", len(want))
	}

	noRedirect := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	follow := &http.Client{Timeout: 10 * time.Second}
	get := func(c *http.Client, url string) (int, http.Header, []byte) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, body
	}

	// Customers of a task not open on its owner yet (a rebalance that
	// began after the wait above) answer 503 until it is.
	waitFor(ctx, t, 60*time.Second, "every task open on its owner", func() (bool, string) {
		for customer := range want {
			for _, s := range servers {
				if status, _, body := get(noRedirect, "http://"+s.addr+"/portfolio/"+customer); status == http.StatusServiceUnavailable {
					return false, fmt.Sprintf("%s: %s", s.id, body)
				}
			}
		}
		return true, ""
	})

	owned := map[string]int{}
	for customer, p := range want {
		var owner *server
		for _, s := range servers {
			status, hdr, body := get(noRedirect, "http://"+s.addr+"/portfolio/"+customer)
			switch status {
			case http.StatusOK:
				var got orders.Portfolio
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("%s: %s: %v", s.id, body, err)
				}
				if got != p {
					t.Fatalf("%s: portfolio of %s = %+v, want %+v", s.id, customer, got, p)
				}
				if owner != nil {
					t.Fatalf("%s answered by both instances", customer)
				}
				owner = s
			case http.StatusTemporaryRedirect:
				var ans queryAnswer
				if err := json.Unmarshal(body, &ans); err != nil || ans.Owner == nil {
					t.Fatalf("%s: redirect body %s: %v", s.id, body, err)
				}
				loc := hdr.Get("Location")
				to := byAddr[ans.Owner.Endpoint]
				if to == nil || to == s || loc != "http://"+ans.Owner.Endpoint+"/portfolio/"+customer || ans.Owner.InstanceID != to.id {
					t.Fatalf("%s: %s redirected to %q, owner %+v", s.id, customer, loc, ans.Owner)
				}
			default:
				t.Fatalf("%s: GET /portfolio/%s: %d %s", s.id, customer, status, body)
			}
		}
		if owner == nil {
			t.Fatalf("%s answered by no instance", customer)
		}
		owned[owner.id]++
		// The instance that does not own it redirects; following it gives
		// the owner's answer.
		other := a
		if owner == a {
			other = b
		}
		status, _, body := get(follow, "http://"+other.addr+"/portfolio/"+customer)
		var got orders.Portfolio
		if status != http.StatusOK || json.Unmarshal(body, &got) != nil || got != p {
			t.Fatalf("following the redirect for %s from %s: %d %s", customer, other.id, status, body)
		}
	}
	if owned["a"] == 0 || owned["b"] == 0 {
		t.Fatalf("customers per instance: %v; want both to own some", owned)
	}

	// A customer with no portfolio: 404 from its owner, 307 from the other.
	var statuses []int
	for _, s := range servers {
		status, _, _ := get(noRedirect, "http://"+s.addr+"/portfolio/C9999999")
		statuses = append(statuses, status)
	}
	if !(statuses[0] == http.StatusNotFound && statuses[1] == http.StatusTemporaryRedirect ||
		statuses[1] == http.StatusNotFound && statuses[0] == http.StatusTemporaryRedirect) {
		t.Fatalf("unknown customer: statuses %v, want one 404 and one 307", statuses)
	}
}

func TestAdvertised(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	for httpAddr, want := range map[string]string{
		"127.0.0.1:0":    "127.0.0.1:" + port,
		"localhost:8080": "localhost:" + port, // the port bound, not the one asked for
		":0":             net.JoinHostPort(host, port),
		"0.0.0.0:0":      net.JoinHostPort(host, port),
		"[::]:0":         net.JoinHostPort(host, port),
	} {
		if got := advertised(httpAddr, ln); got != want {
			t.Errorf("advertised(%q) = %q, want %q", httpAddr, got, want)
		}
	}
}
