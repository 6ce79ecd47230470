package securetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/internal/apptest"
	"github.com/choreo-go/choreo/internal/testbroker"
	"github.com/choreo-go/choreo/internal/testcerts"
	"github.com/choreo-go/choreo/runtime"
)

const (
	adminUser = "admin"
	adminPass = "admin-S3cret-for-tests"
	// appPass is searched for in logs and errors: it must never show.
	appPass = "app-Pa55word-xyzzy-7f3a"
)

// secureBroker is a kfake cluster with optional mutual TLS and, with SASL,
// SCRAM users under enforced ACLs, plus a superuser client on it.
type secureBroker struct {
	br  *testbroker.Broker
	pki *testcerts.PKI
	// admin is a superuser (or, without SASL, plain) client.
	admin *kgo.Client
	adm   *kadm.Client
	sasl  bool
}

func startBroker(ctx context.Context, t *testing.T, withTLS, withSASL bool) *secureBroker {
	t.Helper()
	sb := &secureBroker{sasl: withSASL}
	var extra []kfake.Opt
	if withTLS {
		sb.pki = newPKI(t, "broker")
		extra = append(extra, kfake.TLS(sb.pki.ServerTLS()))
	}
	if withSASL {
		extra = append(extra, kfake.EnableSASL(), kfake.Superuser(runtime.SASLScramSHA512, adminUser, adminPass), kfake.EnableACLs())
	}
	br, err := testbroker.Start(testbroker.Options{Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	sb.br = br
	sec := sb.security(adminUser, adminPass)
	opts, err := sec.ClientOpts()
	if err != nil {
		t.Fatal(err)
	}
	sb.admin, err = kgo.NewClient(append(append(orders.ProducerOpts(), kgo.SeedBrokers(br.Addrs()...)), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.admin.Close)
	sb.adm = kadm.NewClient(sb.admin)
	if err := orders.CreateTopics(ctx, sb.adm, 3); err != nil {
		t.Fatal(err)
	}
	return sb
}

// security is what a client of user needs on this broker.
func (sb *secureBroker) security(user string, pass runtime.Secret) runtime.Security {
	var s runtime.Security
	if sb.pki != nil {
		s.CAFile, s.CertFile, s.KeyFile = sb.pki.CAFile, sb.pki.CertFile, sb.pki.KeyFile
	}
	if sb.sasl {
		s.SASLMechanism, s.User, s.Password = runtime.SASLScramSHA512, user, pass
	}
	return s
}

// addUser creates a SCRAM-SHA-512 user.
func (sb *secureBroker) addUser(ctx context.Context, t *testing.T, user, pass string) {
	t.Helper()
	res, err := sb.adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: user, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: pass}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("add user %s: %v", user, err)
	}
}

// grant creates allow-ACLs for user.
func (sb *secureBroker) grant(ctx context.Context, t *testing.T, user string, acls []runtime.ACL) {
	t.Helper()
	for _, a := range acls {
		b := kadm.NewACLs().Allow("User:" + user).AllowHosts("*").Operations(a.Operation)
		if a.Prefixed {
			b.ResourcePatternType(kadm.ACLPatternPrefixed)
		} else {
			b.ResourcePatternType(kadm.ACLPatternLiteral)
		}
		switch a.Resource {
		case kmsg.ACLResourceTypeTopic:
			b.Topics(a.Name)
		case kmsg.ACLResourceTypeGroup:
			b.Groups(a.Name)
		case kmsg.ACLResourceTypeTransactionalId:
			b.TransactionalIDs(a.Name)
		default:
			t.Fatalf("unexpected ACL resource in %v", a)
		}
		res, err := sb.adm.CreateACLs(ctx, b)
		if err == nil {
			for _, r := range res {
				err = errors.Join(err, r.Err)
			}
		}
		if err != nil {
			t.Fatalf("grant %v: %v", a, err)
		}
	}
}

// produce writes a small order load into the input topics.
func (sb *secureBroker) produce(ctx context.Context, t *testing.T, lines int) {
	t.Helper()
	gen := orders.DefaultOptions(11)
	gen.Products, gen.Lines, gen.Customers = 100, lines, 50
	gen.PriceChanges, gen.Deletes = 2, 1
	if err := orders.Produce(ctx, sb.admin, gen, nil); err != nil {
		t.Fatal("produce:", err)
	}
}

// newApp builds the order topology under appID with a debug logger into
// logs (so the search for secrets covers franz-go's logs too).
func newApp(t *testing.T, appID string, sec runtime.Security, addrs []string, logs *apptest.Buffer) *runtime.App {
	t.Helper()
	b := runtime.NewBuilder()
	orders.Topology(b)
	app, err := runtime.New(b, runtime.Config{
		Brokers:        addrs,
		ApplicationID:  appID,
		StateDir:       t.TempDir(),
		Guarantee:      runtime.ExactlyOnce,
		SessionTimeout: 2 * time.Second,
		Security:       sec,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// noSecret fails the test if a secret shows in text.
func noSecret(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s shows a secret (%.12s...)", where, s)
		}
	}
}

// TestOrdersEndToEndSecure runs the order topology under exactly-once on a
// broker with mutual TLS, and on one with mutual TLS, SASL/SCRAM and
// enforced ACLs where the app's user holds exactly App.RequiredACLs: the
// order-portfolio topic and the tables (from their changelogs) must equal
// the model.
func TestOrdersEndToEndSecure(t *testing.T) {
	for _, tc := range []struct {
		name string
		sasl bool
	}{
		{"mtls", false},
		{"mtls+scram+acls", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t, 3*time.Minute)
			sb := startBroker(ctx, t, true, tc.sasl)
			sb.produce(ctx, t, 1500)

			const appID = "secure-orders"
			logs := &apptest.Buffer{}
			app := newApp(t, appID, sb.security("app", appPass), sb.br.Addrs(), logs)
			if tc.sasl {
				sb.addUser(ctx, t, "app", appPass)
				sb.grant(ctx, t, "app", app.RequiredACLs())
			}
			done := make(chan error, 1)
			go func() { done <- app.Run(ctx) }()
			wctx, cancel := context.WithCancel(ctx)
			waited := make(chan error, 1)
			go func() { waited <- orders.WaitProcessed(wctx, sb.admin, appID, orders.SourceTopics(appID)) }()
			select {
			case err := <-waited:
				cancel()
				if err != nil {
					t.Fatal("waiting for the app:", err)
				}
			case err := <-done:
				cancel()
				t.Fatalf("app stopped early: %v\nlogs:\n%s", err, logs)
			}
			app.Close()
			if err := <-done; err != nil {
				t.Fatal("app:", err)
			}

			in, err := orders.ReadInputs(ctx, sb.admin)
			if err != nil {
				t.Fatal(err)
			}
			want, st := orders.Evaluate(in)
			if st.Events == 0 || st.Dropped == 0 {
				t.Fatalf("load: %+v", st)
			}
			got, err := orders.ReadPortfolioTopic(ctx, sb.admin)
			if err != nil {
				t.Fatal(err)
			}
			if diff := orders.Diff(want, got); len(diff) > 0 {
				t.Errorf("order-portfolio differs from the model for %d customers: %v", len(diff), diff[:min(5, len(diff))])
			}
			portfolio, lines, err := orders.ReadTables(ctx, sb.admin, appID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := orders.Diff(want, portfolio); len(diff) > 0 {
				t.Errorf("portfolio table differs from the model for %d customers: %v", len(diff), diff[:min(5, len(diff))])
			}
			if diff := orders.DiffLines(orders.EvaluateLines(in), lines); len(diff) > 0 {
				t.Errorf("lines table differs from the model for %d lines: %v", len(diff), diff[:min(5, len(diff))])
			}
			noSecret(t, "logs", logs.String(), appPass, clientKeyPEM(t, sb.pki))
		})
	}
}

// runUntilError runs app and returns Run's error, failing the test if it
// does not stop on its own within limit.
func runUntilError(ctx context.Context, t *testing.T, app *runtime.App, logs *apptest.Buffer, limit time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	select {
	case err := <-done:
		return time.Since(start), err
	case <-time.After(limit):
		app.Close()
		<-done
		t.Fatalf("the app did not stop within %v (state %v): a security failure must not be retried\nlogs:\n%s", limit, app.State(), tail(logs.String(), 3000))
		return 0, nil
	}
}

// TestSecurityFailures: a wrong password, a broker certificate from an
// untrusted CA and a missing ACL each stop the app within seconds in the
// Error state, with an error saying what is wrong (errors.Is with
// ErrAuthentication or ErrNotAuthorized), and neither the error nor the
// logs show the password or the client key.
func TestSecurityFailures(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	sb := startBroker(ctx, t, true, true)
	sb.addUser(ctx, t, "app", appPass)
	other := newPKI(t, "other")

	for _, tc := range []struct {
		name   string
		sec    func() runtime.Security
		grant  bool
		want   error
		inText string
	}{
		{
			name: "wrong password",
			sec: func() runtime.Security {
				s := sb.security("app", appPass+"-wrong")
				return s
			},
			want: runtime.ErrAuthentication, inText: "SASL",
		},
		{
			name: "untrusted broker certificate",
			sec: func() runtime.Security {
				s := sb.security("app", appPass)
				s.CAFile = other.CAFile // trusts another CA only
				return s
			},
			want: runtime.ErrAuthentication, inText: "TLS",
		},
		{
			name:  "missing ACL",
			sec:   func() runtime.Security { return sb.security("app", appPass) },
			grant: true,
			want:  runtime.ErrNotAuthorized, inText: `Read on group "fail-missing-acl"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			appID := "fail-" + strings.ReplaceAll(strings.ToLower(tc.name), " ", "-")
			logs := &apptest.Buffer{}
			app := newApp(t, appID, tc.sec(), sb.br.Addrs(), logs)
			if tc.grant {
				var acls []runtime.ACL
				for _, a := range app.RequiredACLs() {
					if a.Resource != kmsg.ACLResourceTypeGroup {
						acls = append(acls, a)
					}
				}
				sb.grant(ctx, t, "app", acls)
			}
			took, err := runUntilError(ctx, t, app, logs, 20*time.Second)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Run = %v, want an error wrapping %v\nlogs:\n%s", err, tc.want, logs)
			}
			if !strings.Contains(err.Error(), tc.inText) {
				t.Errorf("error %q does not mention %q", err, tc.inText)
			}
			if app.State() != runtime.Error || app.Alive() {
				t.Errorf("state %v (alive %v), want Error", app.State(), app.Alive())
			}
			t.Logf("stopped after %v: %v", took.Round(time.Millisecond), err)
			for _, s := range []string{appPass, appPass + "-wrong", clientKeyPEM(t, sb.pki)} {
				noSecret(t, "error", err.Error(), s)
				noSecret(t, "error (%+v)", fmt.Sprintf("%+v", err), s)
				noSecret(t, "logs", logs.String(), s)
			}
		})
	}
}

// TestEachRequiredACL grants App.RequiredACLs minus one, for each one in
// turn, and checks that the app stops in the Error state with an
// *AuthorizationError naming exactly the removed right. Rights the broker
// reports (topic operations through metadata, group operations through
// DescribeGroups) are found at start-up; Create at the first create, the
// transactional id at the first transaction.
func TestEachRequiredACL(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	sb := startBroker(ctx, t, false, true)
	sb.produce(ctx, t, 100)

	probe := newApp(t, "acl-probe", runtime.Security{}, sb.br.Addrs(), &apptest.Buffer{})
	n := len(probe.RequiredACLs())
	if n < 10 {
		t.Fatalf("RequiredACLs lists %d rights for the order topology under exactly-once: %v", n, probe.RequiredACLs())
	}
	for i := range n {
		appID := fmt.Sprintf("acl%02d", i)
		user := appID + "-user"
		logs := &apptest.Buffer{}
		app := newApp(t, appID, sb.security(user, appPass), sb.br.Addrs(), logs)
		acls := app.RequiredACLs()
		removed := acls[i]
		t.Run(removed.String(), func(t *testing.T) {
			sb.addUser(ctx, t, user, appPass)
			sb.grant(ctx, t, user, append(acls[:i:i], acls[i+1:]...))
			took, err := runUntilError(ctx, t, app, logs, 45*time.Second)
			var ae *runtime.AuthorizationError
			if !errors.As(err, &ae) || !errors.Is(err, runtime.ErrNotAuthorized) {
				t.Fatalf("Run = %v, want an *AuthorizationError\nlogs:\n%s", err, tail(logs.String(), 4000))
			}
			if ae.Resource != removed.Resource || ae.Operation != removed.Operation || !covers(removed, ae.Name) {
				t.Fatalf("error names %s on %v %q, removed %v: %v", ae.Operation, ae.Resource, ae.Name, removed, err)
			}
			if app.State() != runtime.Error {
				t.Errorf("state %v, want Error", app.State())
			}
			noSecret(t, "error", err.Error(), appPass)
			noSecret(t, "logs", logs.String(), appPass)
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
		})
	}
}

func covers(a runtime.ACL, name string) bool {
	if a.Prefixed {
		return strings.HasPrefix(name, a.Name)
	}
	return a.Name == name
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// newPKI generates a CA, a broker certificate for 127.0.0.1 and a client
// certificate in a temporary directory.
func newPKI(t *testing.T, name string) *testcerts.PKI {
	t.Helper()
	p, err := testcerts.New(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// clientKeyPEM is the client's private key, a secret the logs must not show.
func clientKeyPEM(t *testing.T, p *testcerts.PKI) string {
	t.Helper()
	b, err := os.ReadFile(p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
