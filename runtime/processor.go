package runtime

import (
	"bytes"
	"fmt"
	"time"

	"github.com/choreo-go/choreo/internal/graph"
)

// Processor is a user-written operator (the processor API). One instance
// is created per task by the supplier given to Process: Init is called once
// the task's stores are ready, Process for every record, Close when the
// task closes.
type Processor[KIn, VIn, KOut, VOut any] interface {
	Init(ctx ProcessorContext[KOut, VOut]) error
	Process(r Record[KIn, VIn]) error
	Close() error
}

// ProcessorContext is what a Processor sees of its task.
type ProcessorContext[K, V any] interface {
	// Forward sends a record to the processor's downstream operators.
	Forward(r Record[K, V]) error
	// Schedule registers a punctuator that fires every interval of stream
	// time or wall-clock time with the time it fires at (ms); cancel stops
	// it. Inside a punctuator RecordMetadata reports ok=false.
	Schedule(interval time.Duration, typ PunctuationType, fn func(ts int64) error) (cancel func())
	// StreamTime is the largest record timestamp the task has seen.
	StreamTime() int64
	// Now is the wall clock (controllable in tests).
	Now() time.Time
	// RecordMetadata describes the input record being processed.
	RecordMetadata() (topic string, partition int32, offset int64, ok bool)
	// TaskPartition is the partition of the task.
	TaskPartition() int32
	// AppID is the application id.
	AppID() string
	// Store returns a store the processor declared in Process, at byte
	// level; OpenStore gives typed access. Asking for an undeclared store
	// is an error.
	Store(name string) (RawStore, error)
}

// RawStore is byte-level access to one store of a task, through the task's
// pending batch: reads see the task's own uncommitted writes.
type RawStore = graph.Store

// PunctuationType selects the clock that drives a punctuator.
type PunctuationType = graph.PunctuationType

// Punctuation types.
const (
	// StreamTime punctuators fire as the task's stream time advances.
	StreamTime = graph.StreamTime
	// WallClockTime punctuators fire on the wall clock.
	WallClockTime = graph.WallClockTime
)

// StoreRef names a key-value store declared with AddStore.
type StoreRef[K, V any] struct {
	name string
	key  Serde[K]
	val  Serde[V]
}

// Name is the store name, to list in Process.
func (r StoreRef[K, V]) Name() string { return r.name }

// KeySerde is the serde of the store's keys.
func (r StoreRef[K, V]) KeySerde() Serde[K] { return r.key }

// ValueSerde is the serde of the store's values.
func (r StoreRef[K, V]) ValueSerde() Serde[V] { return r.val }

// AddStore declares a logged key-value store (changelog
// <app>-<name>-changelog) for processors. A processor gets it when it
// lists the name in Process.
func AddStore[K, V any](b *Builder, name string, key Serde[K], value Serde[V]) StoreRef[K, V] {
	b.use()
	if name == "" {
		b.errorf("AddStore: empty name")
	}
	if key == nil || value == nil {
		b.errorf("AddStore(%q): nil serde", name)
	}
	b.addStore(&graph.StoreSpec{Name: name, Logged: true})
	return StoreRef[K, V]{name: name, key: key, val: value}
}

// OpenStore opens the store ref for the processor of ctx, with typed
// access. (A generic method StoreRef.Open is impossible in Go.)
func OpenStore[K, V, KO, VO any](ctx ProcessorContext[KO, VO], ref StoreRef[K, V]) (*KVStore[K, V], error) {
	if ref.name == "" {
		return nil, fmt.Errorf("runtime: OpenStore: zero StoreRef")
	}
	st, err := ctx.Store(ref.name)
	if err != nil {
		return nil, err
	}
	return &KVStore[K, V]{st: st, key: ref.key, val: ref.val}, nil
}

// KVStore is typed access to a key-value store of one task.
type KVStore[K, V any] struct {
	st  graph.Store
	key Serde[K]
	val Serde[V]
}

// Get returns the value stored under k; ok is false when there is none.
func (s *KVStore[K, V]) Get(k K) (v V, ok bool, err error) {
	kb, err := s.key.Serialize(k)
	if err != nil {
		return v, false, serdeErr("serialize key", err)
	}
	vb, ok, err := s.st.Get(kb)
	if err != nil || !ok {
		return v, false, err
	}
	if v, err = s.val.Deserialize(vb); err != nil {
		return v, false, serdeErr("deserialize value", err)
	}
	return v, true, nil
}

// Put stores v under k.
func (s *KVStore[K, V]) Put(k K, v V) error {
	kb, err := s.key.Serialize(k)
	if err != nil {
		return serdeErr("serialize key", err)
	}
	vb, err := s.val.Serialize(v)
	if err != nil {
		return serdeErr("serialize value", err)
	}
	if vb == nil {
		vb = []byte{}
	}
	return s.st.Put(kb, vb)
}

// Delete removes k.
func (s *KVStore[K, V]) Delete(k K) error {
	kb, err := s.key.Serialize(k)
	if err != nil {
		return serdeErr("serialize key", err)
	}
	return s.st.Delete(kb)
}

// Range calls fn for the entries with from <= key <= to (a nil bound is
// unbounded), in the byte order of the serialized keys, until fn returns
// false. The byte order is the key order for String and for non-negative
// Int64 keys.
func (s *KVStore[K, V]) Range(from, to *K, fn func(K, V) bool) error {
	var lower, upper []byte
	if from != nil {
		b, err := s.key.Serialize(*from)
		if err != nil {
			return serdeErr("serialize key", err)
		}
		lower = b
		if lower == nil {
			lower = []byte{}
		}
	}
	if to != nil {
		b, err := s.key.Serialize(*to)
		if err != nil {
			return serdeErr("serialize key", err)
		}
		upper = append(bytes.Clone(b), 0) // the next key in byte order: to is included
	}
	it, err := s.st.Range(lower, upper)
	if err != nil {
		return err
	}
	for it.Next() {
		k, err := s.key.Deserialize(it.Key())
		if err != nil {
			_ = it.Close()
			return serdeErr("deserialize key", err)
		}
		v, err := s.val.Deserialize(it.Value())
		if err != nil {
			_ = it.Close()
			return serdeErr("deserialize value", err)
		}
		if !fn(k, v) {
			break
		}
	}
	if err := it.Err(); err != nil {
		_ = it.Close()
		return err
	}
	return it.Close()
}

// Process adds a user processor: supplier is called once per task to
// create its instance. stores lists the stores the processor uses (declared
// with AddStore, or a table's StoreName); they must exist when Build runs.
// The output key and value serdes are WithKeySerde and WithValueSerde,
// else DefaultSerde. The processor may change the key, so grouping and
// joins downstream repartition.
func Process[KIn, VIn, KOut, VOut any](s Stream[KIn, VIn], supplier func() Processor[KIn, VIn, KOut, VOut], stores []string, opts ...Option) Stream[KOut, VOut] {
	b := s.builder()
	o := b.parseOptions("Process", optName|optKeySerde|optValueSerde, opts)
	name := b.nameOr(o, "KSTREAM-PROCESSOR-")
	if supplier == nil {
		b.errorf("Process %q: nil supplier", name)
	}
	stores = append([]string(nil), stores...)
	declared := make(map[string]bool, len(stores))
	for _, st := range stores {
		if declared[st] {
			b.errorf("Process %q: store %q listed twice", name, st)
		}
		declared[st] = true
	}
	b.checks = append(b.checks, func() error {
		for _, st := range stores {
			if b.g.Stores[st] == nil {
				return fmt.Errorf("runtime: Process %q: unknown store %q", name, st)
			}
		}
		return nil
	})
	n := addProcessor(b, name, "process", stores, s.node,
		func(t graph.Task, kids fanout[KOut, VOut]) (processor[KIn, VIn], error) {
			p := supplier()
			if p == nil {
				return nil, fmt.Errorf("supplier returned nil")
			}
			ctx := &procContext[KOut, VOut]{t: t, kids: kids, name: name, stores: declared}
			if err := p.Init(ctx); err != nil {
				return nil, err
			}
			return &procInst[KIn, VIn, KOut, VOut]{name: name, p: p}, nil
		})
	return Stream[KOut, VOut]{b: b, node: n,
		key:     keySerdeOr(b, o, "Process", DefaultSerde[KOut]()),
		val:     valueSerdeOr(b, o, "Process", DefaultSerde[VOut]()),
		rekeyed: true}
}

type procInst[KIn, VIn, KOut, VOut any] struct {
	name string
	p    Processor[KIn, VIn, KOut, VOut]
}

func (pi *procInst[KIn, VIn, KOut, VOut]) process(r Record[KIn, VIn]) error {
	if err := pi.p.Process(r); err != nil {
		return nodeErr(pi.name, err)
	}
	return nil
}

// Close closes the user processor.
func (pi *procInst[KIn, VIn, KOut, VOut]) Close() error { return pi.p.Close() }

type procContext[K, V any] struct {
	t      graph.Task
	kids   fanout[K, V]
	name   string
	stores map[string]bool
}

func (c *procContext[K, V]) Forward(r Record[K, V]) error { return c.kids.forward(r) }

func (c *procContext[K, V]) Schedule(interval time.Duration, typ PunctuationType, fn func(ts int64) error) func() {
	return c.t.Schedule(interval, typ, func(ts int64) error {
		if err := fn(ts); err != nil {
			return nodeErr(c.name, err)
		}
		return nil
	})
}

func (c *procContext[K, V]) StreamTime() int64    { return c.t.StreamTime() }
func (c *procContext[K, V]) Now() time.Time       { return c.t.Now() }
func (c *procContext[K, V]) TaskPartition() int32 { return c.t.Partition() }
func (c *procContext[K, V]) AppID() string        { return c.t.AppID() }
func (c *procContext[K, V]) RecordMetadata() (string, int32, int64, bool) {
	rc := c.t.Record()
	if rc == nil {
		return "", 0, 0, false
	}
	return rc.Topic, rc.Partition, rc.Offset, true
}

func (c *procContext[K, V]) Store(name string) (RawStore, error) {
	if !c.stores[name] {
		return nil, fmt.Errorf("runtime: processor %q did not declare store %q", c.name, name)
	}
	return c.t.Store(name)
}
