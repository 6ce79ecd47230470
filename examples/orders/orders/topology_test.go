package orders

import (
	"strings"
	"testing"

	"github.com/choreo-go/choreo/runtime"
)

// TestTopologyBuilds: the topology builds, and its stores and repartition
// topics carry the explicit names (their internal topics depend on them).
func TestTopologyBuilds(t *testing.T) {
	b := runtime.NewBuilder()
	pf := Topology(b)
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if pf.StoreName() != NamePortfolio {
		t.Fatalf("portfolio store %q", pf.StoreName())
	}
	d := topo.Describe()
	for _, want := range []string{
		"(stores: [" + NameProducts + "])",
		"(stores: [" + NameLines + "])",
		"(stores: [" + NamePortfolio + "])",
		"topic: " + NameLinesByProduct + "-repartition",
		"topic: " + NameLinesByLine + "-repartition",
		"topic: " + NameLinesByCustomer + "-repartition",
		"topic: " + TopicPortfolio,
		"Processor: " + NamePrice + " ",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe lacks %q:\n%s", want, d)
		}
	}
}
