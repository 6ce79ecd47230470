package runtime

import (
	"fmt"
	"reflect"
)

// Option configures an operator. Every operator accepts Named; the others
// are accepted where they make sense and are a Build error elsewhere.
type Option func(*options)

type optionKind uint8

const (
	optName optionKind = 1 << iota
	optKeySerde
	optValueSerde
	optPartitions
)

type options struct {
	set        optionKind
	name       string
	keySerde   any
	valueSerde any
	partitions int32
	errs       []error
}

// Named gives an operator an explicit, stable name. For a stateful
// operator (aggregation, TableOf) it is also the store name, so the
// changelog topic is <app>-<name>-changelog; for Repartition, GroupBy,
// GroupByKey, GroupTable and a repartitioning Join it is also the
// repartition topic name, <app>-<name>-repartition. Explicit names survive
// topology edits; derived names (KSTREAM-FILTER-0000000003) change when an
// operator is added upstream.
func Named(name string) Option {
	return func(o *options) {
		if name == "" {
			o.errs = append(o.errs, fmt.Errorf("Named: empty name"))
			return
		}
		o.set |= optName
		o.name = name
	}
}

// WithKeySerde sets the key serde of the operator's output (or of the topic
// it writes). T must be the operator's key type, else Build fails.
func WithKeySerde[T any](s Serde[T]) Option {
	return func(o *options) {
		if s == nil {
			o.errs = append(o.errs, fmt.Errorf("WithKeySerde: nil serde"))
			return
		}
		o.set |= optKeySerde
		o.keySerde = s
	}
}

// WithValueSerde sets the value serde of the operator's output (or of the
// topic it writes, or of the aggregate it stores). T must be the matching
// value type, else Build fails.
func WithValueSerde[T any](s Serde[T]) Option {
	return func(o *options) {
		if s == nil {
			o.errs = append(o.errs, fmt.Errorf("WithValueSerde: nil serde"))
			return
		}
		o.set |= optValueSerde
		o.valueSerde = s
	}
}

// WithPartitions sets the partition count of the repartition topic that
// Repartition, GroupBy, GroupByKey or GroupTable creates. Without it the
// count is derived at startup (from the co-partitioned topics, else the
// upstream source topics).
func WithPartitions(n int32) Option {
	return func(o *options) {
		if n <= 0 {
			o.errs = append(o.errs, fmt.Errorf("WithPartitions: partition count %d must be positive", n))
			return
		}
		o.set |= optPartitions
		o.partitions = n
	}
}

var optionNames = map[optionKind]string{
	optName:       "Named",
	optKeySerde:   "WithKeySerde",
	optValueSerde: "WithValueSerde",
	optPartitions: "WithPartitions",
}

// parseOptions applies opts and records an error on b for every option op
// does not accept.
func (b *Builder) parseOptions(op string, allowed optionKind, opts []Option) *options {
	o := &options{}
	for _, opt := range opts {
		if opt != nil {
			opt(o)
		}
	}
	for _, err := range o.errs {
		b.errorf("%s: %w", op, err)
	}
	for k := optName; k <= optPartitions; k <<= 1 {
		if o.set&k != 0 && allowed&k == 0 {
			b.errorf("%s: option %s is not supported", op, optionNames[k])
		}
	}
	return o
}

// keySerdeOr returns the WithKeySerde serde of o, checked against K, or def.
func keySerdeOr[K any](b *Builder, o *options, op string, def Serde[K]) Serde[K] {
	return serdeOr(b, o.keySerde, op, "key", def)
}

// valueSerdeOr returns the WithValueSerde serde of o, checked against V, or def.
func valueSerdeOr[V any](b *Builder, o *options, op string, def Serde[V]) Serde[V] {
	return serdeOr(b, o.valueSerde, op, "value", def)
}

func serdeOr[T any](b *Builder, s any, op, what string, def Serde[T]) Serde[T] {
	if s == nil {
		return def
	}
	if ts, ok := s.(Serde[T]); ok {
		return ts
	}
	b.errorf("%s: %s serde %T does not handle the %s type %s", op, what, s, what, reflect.TypeFor[T]())
	return def
}
