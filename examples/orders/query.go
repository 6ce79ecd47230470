package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/choreo-go/choreo/examples/orders/orders"
	"github.com/choreo-go/choreo/runtime"
)

// newHandler serves the app's probes and topology (App.Handler) and
//
//	GET /portfolio/{customer}
//
// an interactive query of the portfolio table. Answers:
//
//   - 200 with the portfolio as JSON (the fields of the order-portfolio
//     topic) when this instance owns the customer;
//   - 404 when it owns the customer, who has no portfolio;
//   - 307 Temporary Redirect to http://<owner>/portfolio/{customer} when
//     another instance owns the customer (the owner's advertised
//     -advertise address; curl -L follows it), with a JSON body naming
//     the owner; 421 Misdirected Request with that body when the owner
//     advertises no address;
//   - 503 with Retry-After while the answer is not available here: the
//     app starts, rebalances, or restores the customer's task.
//
// Error and redirect bodies are JSON: {"customer", "error", "owner":
// {"instance_id", "endpoint"}}.
func newHandler(app *runtime.App, q *runtime.TableQuery[string, orders.Portfolio], log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", app.Handler())
	mux.HandleFunc("GET /portfolio/{customer}", func(w http.ResponseWriter, r *http.Request) {
		customer := r.PathValue("customer")
		w.Header().Set("Cache-Control", "no-store")
		p, ok, err := q.Get(r.Context(), customer)
		var nl *runtime.NotLocalError
		switch {
		case err == nil && ok:
			writeJSON(w, http.StatusOK, p)
		case err == nil:
			writeJSON(w, http.StatusNotFound, queryAnswer{Customer: customer, Error: "no portfolio for this customer"})
		case errors.As(err, &nl):
			ans := queryAnswer{Customer: customer, Error: "owned by another instance",
				Owner: &ownerJSON{InstanceID: nl.Owner.InstanceID, Endpoint: nl.Owner.Endpoint}}
			if nl.Owner.Endpoint == "" {
				writeJSON(w, http.StatusMisdirectedRequest, ans)
				return
			}
			w.Header().Set("Location", (&url.URL{Scheme: "http", Host: nl.Owner.Endpoint, Path: "/portfolio/" + customer}).String())
			writeJSON(w, http.StatusTemporaryRedirect, ans)
		case errors.Is(err, runtime.ErrStoreNotReady):
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, queryAnswer{Customer: customer, Error: err.Error()})
		default:
			log.Warn("portfolio query", "customer", customer, "err", err)
			writeJSON(w, http.StatusInternalServerError, queryAnswer{Customer: customer, Error: err.Error()})
		}
	})
	return mux
}

// queryAnswer is the body of a query that has no portfolio to return.
type queryAnswer struct {
	Customer string     `json:"customer"`
	Error    string     `json:"error"`
	Owner    *ownerJSON `json:"owner,omitempty"`
}

type ownerJSON struct {
	InstanceID string `json:"instance_id"`
	Endpoint   string `json:"endpoint"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// advertised is the host:port other instances should use to reach this
// one: the -http host with the port actually bound, or this machine's
// host name when -http names no host or a wildcard address.
func advertised(httpAddr string, ln net.Listener) string {
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return ln.Addr().String()
	}
	host, _, err := net.SplitHostPort(httpAddr)
	if ip := net.ParseIP(host); err != nil || host == "" || ip != nil && ip.IsUnspecified() {
		if host, err = os.Hostname(); err != nil {
			host = "localhost"
		}
	}
	if _, err := strconv.Atoi(port); err != nil {
		return ln.Addr().String()
	}
	return net.JoinHostPort(host, port)
}
