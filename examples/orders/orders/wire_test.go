package orders

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// randString covers every str width msgpack has (fix, 8, 16 and 32 bits).
func randString(rng *rand.Rand) string {
	n := []int{0, 1, 5, 31, 32, 255, 256, 65535, 65536}[rng.IntN(9)]
	if rng.IntN(3) > 0 {
		n = rng.IntN(40)
	}
	return strings.Repeat(string(rune('a'+rng.IntN(26))), n)
}

func randInt64(rng *rand.Rand) int64 {
	switch rng.IntN(4) {
	case 0:
		return []int64{0, -1, 127, 128, -32, -33, math.MaxInt64, math.MinInt64, math.MaxInt32 + 1}[rng.IntN(9)]
	case 1:
		return rng.Int64N(200) - 100
	default:
		return int64(rng.Uint64())
	}
}

func randInt32(rng *rand.Rand) int32 {
	return []int32{0, -1, 1, math.MaxInt32, math.MinInt32, int32(rng.Uint32())}[rng.IntN(6)]
}

// codecCase checks one type: the hand-written encoding is byte for byte the
// reflective one, and both decoders agree on it and on other encodings.
type codecCase struct {
	name string
	// gen returns a random value as the type and as its method-less twin.
	gen func(*rand.Rand) (v, wire any)
	// decode decodes with the type's own method; decodeWire reflectively.
	decode, decodeWire func([]byte) (any, error)
}

func wireCases() []codecCase {
	return []codecCase{
		{
			name: "Product",
			gen: func(rng *rand.Rand) (any, any) {
				v := Product{ProductID: randString(rng), Family: []string{"car", "agri", randString(rng)}[rng.IntN(3)], UnitPriceCents: randInt64(rng)}
				return v, productWire(v)
			},
			decode: func(b []byte) (any, error) {
				var v Product
				err := v.UnmarshalMsgpack(b)
				return v, err
			},
			decodeWire: func(b []byte) (any, error) {
				var v productWire
				err := msgpack.Unmarshal(b, &v)
				return Product(v), err
			},
		},
		{
			name: "LineEvent",
			gen: func(rng *rand.Rand) (any, any) {
				v := LineEvent{
					OrderID: randString(rng), LineNo: randInt32(rng), CustomerID: randString(rng), ProductID: randString(rng),
					Quantity: randInt64(rng), Status: []string{StatusCreated, StatusShipped, randString(rng)}[rng.IntN(3)],
					Seq: randInt64(rng), EventTime: randInt64(rng),
				}
				return v, lineEventWire(v)
			},
			decode: func(b []byte) (any, error) {
				var v LineEvent
				err := v.UnmarshalMsgpack(b)
				return v, err
			},
			decodeWire: func(b []byte) (any, error) {
				var v lineEventWire
				err := msgpack.Unmarshal(b, &v)
				return LineEvent(v), err
			},
		},
		{
			name: "PricedLine",
			gen: func(rng *rand.Rand) (any, any) {
				v := PricedLine{
					OrderID: randString(rng), LineNo: randInt32(rng), CustomerID: randString(rng), ProductID: randString(rng),
					Quantity: randInt64(rng), Status: []string{StatusConfirmed, StatusCancelled, randString(rng)}[rng.IntN(3)],
					Seq: randInt64(rng), EventTime: randInt64(rng), Family: []string{"bike", "truck", randString(rng)}[rng.IntN(3)],
					UnitPriceCents: randInt64(rng),
				}
				return v, pricedLineWire(v)
			},
			decode: func(b []byte) (any, error) {
				var v PricedLine
				err := v.UnmarshalMsgpack(b)
				return v, err
			},
			decodeWire: func(b []byte) (any, error) {
				var v pricedLineWire
				err := msgpack.Unmarshal(b, &v)
				return PricedLine(v), err
			},
		},
		{
			name: "Portfolio",
			gen: func(rng *rand.Rand) (any, any) {
				v := Portfolio{
					CustomerID: randString(rng), OpenLines: randInt64(rng), ConfirmedLines: randInt64(rng), ShippedLines: randInt64(rng),
					CancelledLines: randInt64(rng), OpenValueCents: randInt64(rng), LastEventTime: randInt64(rng),
				}
				return v, portfolioWire(v)
			},
			decode: func(b []byte) (any, error) {
				var v Portfolio
				err := v.UnmarshalMsgpack(b)
				return v, err
			},
			decodeWire: func(b []byte) (any, error) {
				var v portfolioWire
				err := msgpack.Unmarshal(b, &v)
				return Portfolio(v), err
			},
		},
	}
}

// TestWireMatchesReflection: the hand-written msgpack methods of the order
// types write the bytes msgpack/v5's reflection writes for the struct tags
// (the wire format of ORDERS.md), and decode what it writes, and what other
// producers may write, to the same values.
func TestWireMatchesReflection(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range wireCases() {
		t.Run(c.name, func(t *testing.T) {
			for range 500 {
				v, wire := c.gen(rng)
				want, err := msgpack.Marshal(wire)
				if err != nil {
					t.Fatal(err)
				}
				// Through msgpack.Marshal, which calls the method.
				got, err := msgpack.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%+v encodes to\n%x\nreflection writes\n%x", v, got, want)
				}
				back, err := c.decode(want)
				if err != nil || !reflect.DeepEqual(back, v) {
					t.Fatalf("round trip of %+v: %+v, %v", v, back, err)
				}

				// Other encodings of the same value: compact integers
				// (as other languages' clients write them) and the fields
				// in reverse order with an unknown field (the fallback).
				var compact bytes.Buffer
				enc := msgpack.NewEncoder(&compact)
				enc.UseCompactInts(true)
				if err := enc.Encode(wire); err != nil {
					t.Fatal(err)
				}
				for _, in := range [][]byte{compact.Bytes(), reordered(t, want)} {
					got, gerr := c.decode(in)
					ref, rerr := c.decodeWire(in)
					if (gerr != nil) != (rerr != nil) || !reflect.DeepEqual(got, ref) || !reflect.DeepEqual(got, v) {
						t.Fatalf("decoding %x: %+v, %v; reflection: %+v, %v; want %+v", in, got, gerr, ref, rerr, v)
					}
				}
			}
		})
	}
}

// reordered re-encodes a map with its entries reversed and an extra unknown
// field.
func reordered(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	n, err := dec.DecodeMapLen()
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, n)
	for i := range keys {
		if keys[i], err = dec.DecodeString(); err != nil {
			t.Fatal(err)
		}
		if err := dec.Skip(); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	enc := msgpack.NewEncoder(&out)
	if err := enc.EncodeMapLen(n + 1); err != nil {
		t.Fatal(err)
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if err := errors.Join(enc.EncodeString(keys[i]), enc.Encode(m[keys[i]])); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(enc.EncodeString("comment"), enc.EncodeString("ignored by both decoders")); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestWireEdgeCases: nil, nil fields, arrays, floats and malformed input
// decode (or fail) exactly as the reflective decoder does.
func TestWireEdgeCases(t *testing.T) {
	mustMarshal := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	full := mustMarshal(LineEvent{OrderID: "O1", LineNo: 2, CustomerID: "C1", ProductID: "P1", Quantity: 3, Status: StatusCreated, Seq: 4, EventTime: 5})
	inputs := map[string][]byte{
		"nil":           {0xc0},
		"empty map":     {0x80},
		"nil fields":    mustMarshal(map[string]any{"order_id": nil, "quantity": nil, "status": "shipped"}),
		"float field":   mustMarshal(map[string]any{"order_id": "O2", "quantity": 2.5}),
		"array":         mustMarshal([]any{"O3", 1, "C", "P", 2, "created", 9, 10}),
		"bin string":    mustMarshal(map[string]any{"order_id": []byte("O4"), "line_no": uint8(200)}),
		"map16":         append([]byte{0xde, 0x00, 0x01}, mustMarshal(map[string]any{"seq": 7})[1:]...),
		"truncated":     full[:len(full)-3],
		"string as int": mustMarshal(map[string]any{"seq": "7"}),
		"not a map":     mustMarshal("hello"),
		"empty":         {},
	}
	for name, in := range inputs {
		var got LineEvent
		gerr := got.UnmarshalMsgpack(in)
		var ref lineEventWire
		rerr := msgpack.Unmarshal(in, &ref)
		if (gerr != nil) != (rerr != nil) || !reflect.DeepEqual(got, LineEvent(ref)) {
			t.Errorf("%s (%x): %+v, %v; reflection: %+v, %v", name, in, got, gerr, ref, rerr)
		}
	}
}
