package partition

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Vectors from Kafka's own UtilsTest.testMurmur2
// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
var javaMurmur2Vectors = []struct {
	in   string
	want int32
}{
	{"21", -973932308},
	{"foobar", -790332482},
	{"a-little-bit-long-string", -985981536},
	{"a-little-bit-longer-string", -1486304829},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
	{"abc", 479470107},
}

func TestMurmur2JavaVectors(t *testing.T) {
	for _, v := range javaMurmur2Vectors {
		if got := Murmur2([]byte(v.in)); got != v.want {
			t.Errorf("Murmur2(%q) = %d, want %d", v.in, got, v.want)
		}
	}
}

func TestForKeyMatchesFranzGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tp := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for i := range 20000 {
		key := make([]byte, rng.IntN(64))
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		n := int32(1 + rng.IntN(200))
		if i%7 == 0 {
			n = int32(1 + rng.IntN(1<<20))
		}
		want := tp.Partition(&kgo.Record{Key: key}, int(n))
		if got := ForKey(key, n); int(got) != want {
			t.Fatalf("ForKey(%x, %d) = %d, franz-go says %d", key, n, got, want)
		}
	}
	for _, v := range javaMurmur2Vectors {
		want := (v.want & 0x7fffffff) % 12
		if got := ForKey([]byte(v.in), 12); got != want {
			t.Errorf("ForKey(%q, 12) = %d, want %d", v.in, got, want)
		}
	}
}

func TestForKeyPanicsOnBadCount(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("ForKey(_, 0) did not panic")
		}
	}()
	ForKey([]byte("k"), 0)
}

func TestMurmur2NoAllocs(t *testing.T) {
	key := []byte("order-line-000123456")
	if n := testing.AllocsPerRun(100, func() { _ = ForKey(key, 12) }); n != 0 {
		t.Fatalf("ForKey allocates %v times", n)
	}
}

func BenchmarkMurmur2(b *testing.B) {
	for _, size := range []int{8, 36, 256} {
		key := make([]byte, size)
		for i := range key {
			key[i] = byte(i * 31)
		}
		b.Run(itoa(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var sink int32
			for b.Loop() {
				sink ^= Murmur2(key)
			}
			_ = sink
		})
	}
}

func BenchmarkForKey(b *testing.B) {
	key := []byte("7f1c0a52-3d5e-4b8e-9a77-0c2f1e4d9b21")
	b.ReportAllocs()
	var sink int32
	for b.Loop() {
		sink ^= ForKey(key, 24)
	}
	_ = sink
}

func itoa(n int) string { return strconv.Itoa(n) }
