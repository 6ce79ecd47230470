package replay

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Difference is one way two results differ.
type Difference struct {
	// Kind is "output" (the records a topic received for a key), "store"
	// (a store's final value of a key) or "error" (records that failed).
	Kind string
	// Where is the topic or store.
	Where string
	Key   []byte
	// A and B are what each side had: the values in order for an output
	// key, the final value for a store key (absent: nil slice), or error
	// texts.
	A, B [][]byte
}

// Report lists the differences between two results.
type Report struct {
	Differences []Difference
	// Compared counts the output records and store entries compared.
	Compared int
}

// Equal reports whether the results had no difference.
func (r *Report) Equal() bool { return len(r.Differences) == 0 }

// Diff compares two results of the same recording: for every output topic
// the sequence of records each key received (values, in order), for every
// store its final entries, and the failed records. Record timestamps and
// offsets are not compared, so a change that only reorders keys across
// partitions shows no difference.
func Diff(a, b *Result) *Report {
	rep := &Report{}
	for _, topic := range unionKeys(a.Outputs, b.Outputs) {
		ka, kb := perKey(a.Outputs[topic]), perKey(b.Outputs[topic])
		for _, key := range unionKeys(ka, kb) {
			va, vb := ka[key], kb[key]
			rep.Compared += max(len(va), len(vb))
			if !slices.EqualFunc(va, vb, bytesEqual) {
				rep.Differences = append(rep.Differences, Difference{Kind: "output", Where: topic, Key: []byte(key), A: va, B: vb})
			}
		}
	}
	for _, store := range unionKeys(a.Stores, b.Stores) {
		sa, sb := storeMap(a.Stores[store]), storeMap(b.Stores[store])
		for _, key := range unionKeys(sa, sb) {
			rep.Compared++
			va, oka := sa[key]
			vb, okb := sb[key]
			if oka != okb || !bytes.Equal(va, vb) {
				d := Difference{Kind: "store", Where: store, Key: []byte(key)}
				if oka {
					d.A = [][]byte{va}
				}
				if okb {
					d.B = [][]byte{vb}
				}
				rep.Differences = append(rep.Differences, d)
			}
		}
	}
	ea, eb := errorTexts(a.Errors), errorTexts(b.Errors)
	if !slices.EqualFunc(ea, eb, bytesEqual) {
		rep.Differences = append(rep.Differences, Difference{Kind: "error", A: ea, B: eb})
	}
	return rep
}

func bytesEqual(x, y []byte) bool { return bytes.Equal(x, y) && (x == nil) == (y == nil) }

func unionKeys[V any](a, b map[string]V) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// perKey groups a topic's records by key (a nil key is its own group).
func perKey(recs []Record) map[string][][]byte {
	out := make(map[string][][]byte)
	for _, r := range recs {
		k := "\x00nil"
		if r.Key != nil {
			k = string(r.Key)
		}
		out[k] = append(out[k], r.Value)
	}
	return out
}

func storeMap(es []StoreEntry) map[string][]byte {
	out := make(map[string][]byte, len(es))
	for _, e := range es {
		out[string(e.Key)] = e.Value
	}
	return out
}

func errorTexts(es []RecordError) [][]byte {
	var out [][]byte
	for _, e := range es {
		out = append(out, []byte(fmt.Sprintf("%s/%d@%d: %s", e.Topic, e.Partition, e.Offset, e.Err)))
	}
	return out
}

// Formatter renders a value of a topic or store for a report; nil renders
// printable UTF-8 as a quoted string and anything else as hex.
type Formatter func(where string, value []byte) string

// Format renders the report, at most limit differences (0: all), with f
// rendering the values.
func (r *Report) Format(f Formatter, limit int) string {
	if f == nil {
		f = func(_ string, v []byte) string { return Printable(v) }
	}
	var sb strings.Builder
	if r.Equal() {
		fmt.Fprintf(&sb, "no difference (%d records and entries compared)\n", r.Compared)
		return sb.String()
	}
	fmt.Fprintf(&sb, "%d differences (%d records and entries compared)\n", len(r.Differences), r.Compared)
	for i, d := range r.Differences {
		if limit > 0 && i == limit {
			fmt.Fprintf(&sb, "… %d more\n", len(r.Differences)-limit)
			break
		}
		switch d.Kind {
		case "error":
			fmt.Fprintf(&sb, "failed records differ:\n")
			side(&sb, "A", d.A, f, d.Where)
			side(&sb, "B", d.B, f, d.Where)
		case "output":
			// A key's records: show where the sequences part.
			at := 0
			for at < min(len(d.A), len(d.B)) && bytesEqual(d.A[at], d.B[at]) {
				at++
			}
			fmt.Fprintf(&sb, "output %s key %s: %d records in A, %d in B; record #%d differs:\n", d.Where, Printable(d.Key), len(d.A), len(d.B), at+1)
			side(&sb, "A", d.A[min(at, len(d.A)):min(at+1, len(d.A))], f, d.Where)
			side(&sb, "B", d.B[min(at, len(d.B)):min(at+1, len(d.B))], f, d.Where)
		default:
			fmt.Fprintf(&sb, "%s %s key %s:\n", d.Kind, d.Where, Printable(d.Key))
			side(&sb, "A", d.A, f, d.Where)
			side(&sb, "B", d.B, f, d.Where)
		}
	}
	return sb.String()
}

func side(sb *strings.Builder, name string, vs [][]byte, f Formatter, where string) {
	if len(vs) == 0 {
		fmt.Fprintf(sb, "  %s: (none)\n", name)
		return
	}
	for _, v := range vs {
		fmt.Fprintf(sb, "  %s: %s\n", name, f(where, v))
	}
}

// Printable renders b as a quoted string when it is printable UTF-8, as
// hex otherwise, and nil as null.
func Printable(b []byte) string {
	if b == nil {
		return "null"
	}
	if utf8.Valid(b) {
		printable := true
		for _, r := range string(b) {
			if !strconv.IsPrint(r) {
				printable = false
				break
			}
		}
		if printable {
			return strconv.Quote(string(b))
		}
	}
	return "0x" + hex.EncodeToString(b)
}
