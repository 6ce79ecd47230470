package runtime

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the app's probes and topology over HTTP:
//
//   - /healthz: liveness — 200 unless the app is in the Error state (503).
//   - /readyz: readiness — 200 while the app is running (or rebalancing
//     after its first assignment) and reached a broker within the last few
//     seconds, else 503; it drops during a broker outage.
//   - /topology: the topology as JSON (DescribeJSONFor the app id);
//     ?format=mermaid gives the Mermaid diagram, ?format=text the Kafka
//     Streams-style description.
//   - /metrics: Prometheus metrics from MetricsGatherer (text or
//     OpenMetrics exposition format).
//
// Probe responses carry a small JSON body: {"state":"RUNNING","ready":true,"alive":true}.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		a.writeProbe(w, a.Alive())
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		a.writeProbe(w, a.Ready())
	})
	mux.HandleFunc("GET /topology", func(w http.ResponseWriter, r *http.Request) {
		appID := a.eng.AppID()
		switch r.URL.Query().Get("format") {
		case "mermaid":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(a.topo.MermaidFor(appID)))
		case "text":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(a.topo.Describe()))
		case "", "json":
			b, err := a.topo.DescribeJSONFor(appID)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
		default:
			http.Error(w, "format must be json, mermaid or text", http.StatusBadRequest)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	return mux
}

type probeBody struct {
	State string `json:"state"`
	Ready bool   `json:"ready"`
	Alive bool   `json:"alive"`
}

func (a *App) writeProbe(w http.ResponseWriter, ok bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(probeBody{State: a.State().String(), Ready: a.Ready(), Alive: a.Alive()})
}
