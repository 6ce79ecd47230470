package orders

import (
	"encoding/binary"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// The order types encode and decode themselves (msgpack.Marshaler and
// msgpack.Unmarshaler) because reflection was most of the order topology's
// CPU: each value is decoded and re-encoded at every repartition hop and
// store access. The bytes are exactly those msgpack/v5 writes for the struct
// tags (a map of the fields in declaration order, strings in the shortest
// str format, int32 and int64 at full width), so ORDERS.md's wire format and
// values written by older versions are unchanged.
//
// Decoding takes a fast path for maps with short string keys, str or bin
// strings and any integer format; anything else (arrays, floats, long keys,
// malformed input) is decoded by msgpack/v5's reflection on a twin type
// without these methods, so every input decodes, or fails, as it did before.

// Twin types without the methods: what msgpack/v5 sees for the fallback.
type (
	productWire    Product
	lineEventWire  LineEvent
	pricedLineWire PricedLine
	portfolioWire  Portfolio
)

func appendMapLen(b []byte, n int) []byte { return append(b, 0x80|byte(n)) } // n < 16

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 256:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xda)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0xdb)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
	}
	return append(b, s...)
}

func appendInt32(b []byte, n int32) []byte {
	return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
}

func appendInt64(b []byte, n int64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

// wireReader reads the msgpack subset of the fast path. Once ok is false,
// the input needs the reflective decoder and the values read are garbage.
type wireReader struct {
	b  []byte
	ok bool
}

func newWireReader(b []byte) wireReader { return wireReader{b: b, ok: true} }

func (r *wireReader) next(n int) []byte {
	if !r.ok || len(r.b) < n {
		r.ok = false
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *wireReader) code() byte {
	if p := r.next(1); p != nil {
		return p[0]
	}
	return 0
}

// mapLen returns the entry count of a map header, or -1 for nil.
func (r *wireReader) mapLen() int {
	switch c := r.code(); {
	case !r.ok:
		return 0
	case c == 0xc0:
		return -1
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f)
	case c == 0xde:
		if p := r.next(2); p != nil {
			return int(binary.BigEndian.Uint16(p))
		}
	case c == 0xdf:
		if p := r.next(4); p != nil {
			return int(binary.BigEndian.Uint32(p))
		}
	}
	r.ok = false
	return 0
}

// key returns a field name; the slice aliases the input.
func (r *wireReader) key() []byte {
	c := r.code()
	if c >= 0xa0 && c <= 0xbf {
		return r.next(int(c & 0x1f))
	}
	r.ok = false
	return nil
}

// raw returns the bytes of a string field (str or bin of any width; nil is
// empty), aliasing the input.
func (r *wireReader) raw() []byte {
	c := r.code()
	var n int
	switch {
	case !r.ok:
		return nil
	case c == 0xc0:
		return nil
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case c == 0xd9 || c == 0xc4:
		if p := r.next(1); p != nil {
			n = int(p[0])
		}
	case c == 0xda || c == 0xc5:
		if p := r.next(2); p != nil {
			n = int(binary.BigEndian.Uint16(p))
		}
	case c == 0xdb || c == 0xc6:
		if p := r.next(4); p != nil {
			n = int(binary.BigEndian.Uint32(p))
		}
	default:
		r.ok = false
	}
	return r.next(n)
}

func (r *wireReader) str() string { return string(r.raw()) }

// status decodes a status field without allocating for the known statuses.
func (r *wireReader) status() string {
	switch b := r.raw(); string(b) {
	case StatusCreated:
		return StatusCreated
	case StatusConfirmed:
		return StatusConfirmed
	case StatusShipped:
		return StatusShipped
	case StatusCancelled:
		return StatusCancelled
	default:
		return string(b)
	}
}

// family decodes a family field without allocating for the known families.
func (r *wireReader) family() string {
	b := r.raw()
	for _, f := range Families {
		if string(b) == f {
			return f
		}
	}
	return string(b)
}

// int64 decodes an integer field of any format, nil as 0, the way
// msgpack/v5's Decoder.DecodeInt64 does.
func (r *wireReader) int64() int64 {
	c := r.code()
	switch {
	case !r.ok:
		return 0
	case c == 0xc0:
		return 0
	case c <= 0x7f || c >= 0xe0:
		return int64(int8(c))
	}
	switch c {
	case 0xcc:
		if p := r.next(1); p != nil {
			return int64(p[0])
		}
	case 0xd0:
		if p := r.next(1); p != nil {
			return int64(int8(p[0]))
		}
	case 0xcd:
		if p := r.next(2); p != nil {
			return int64(binary.BigEndian.Uint16(p))
		}
	case 0xd1:
		if p := r.next(2); p != nil {
			return int64(int16(binary.BigEndian.Uint16(p)))
		}
	case 0xce:
		if p := r.next(4); p != nil {
			return int64(binary.BigEndian.Uint32(p))
		}
	case 0xd2:
		if p := r.next(4); p != nil {
			return int64(int32(binary.BigEndian.Uint32(p)))
		}
	case 0xcf, 0xd3:
		if p := r.next(8); p != nil {
			return int64(binary.BigEndian.Uint64(p))
		}
	default:
		r.ok = false
	}
	return 0
}

// MarshalMsgpack implements msgpack.Marshaler.
func (p Product) MarshalMsgpack() ([]byte, error) {
	b := make([]byte, 0, 48+len(p.ProductID)+len(p.Family))
	b = appendMapLen(b, 3)
	b = appendStr(appendStr(b, "product_id"), p.ProductID)
	b = appendStr(appendStr(b, "family"), p.Family)
	b = appendInt64(appendStr(b, "unit_price_cents"), p.UnitPriceCents)
	return b, nil
}

// UnmarshalMsgpack implements msgpack.Unmarshaler.
func (p *Product) UnmarshalMsgpack(data []byte) error {
	var v Product
	r := newWireReader(data)
	for n := r.mapLen(); n > 0 && r.ok; n-- {
		switch string(r.key()) {
		case "product_id":
			v.ProductID = r.str()
		case "family":
			v.Family = r.family()
		case "unit_price_cents":
			v.UnitPriceCents = r.int64()
		default:
			r.ok = false
		}
	}
	if !r.ok {
		return msgpack.Unmarshal(data, (*productWire)(p))
	}
	*p = v
	return nil
}

// MarshalMsgpack implements msgpack.Marshaler.
func (e LineEvent) MarshalMsgpack() ([]byte, error) {
	b := make([]byte, 0, 128+len(e.OrderID)+len(e.CustomerID)+len(e.ProductID)+len(e.Status))
	return e.appendFields(appendMapLen(b, 8)), nil
}

// appendFields writes the event's eight fields, in declaration order; a
// PricedLine starts with the same eight.
func (e LineEvent) appendFields(b []byte) []byte {
	b = appendStr(appendStr(b, "order_id"), e.OrderID)
	b = appendInt32(appendStr(b, "line_no"), e.LineNo)
	b = appendStr(appendStr(b, "customer_id"), e.CustomerID)
	b = appendStr(appendStr(b, "product_id"), e.ProductID)
	b = appendInt64(appendStr(b, "quantity"), e.Quantity)
	b = appendStr(appendStr(b, "status"), e.Status)
	b = appendInt64(appendStr(b, "seq"), e.Seq)
	return appendInt64(appendStr(b, "event_time"), e.EventTime)
}

// decodeField reads the value of the event field named key; it reports
// false for a key that is not one.
func (e *LineEvent) decodeField(r *wireReader, key []byte) bool {
	switch string(key) {
	case "order_id":
		e.OrderID = r.str()
	case "line_no":
		e.LineNo = int32(r.int64())
	case "customer_id":
		e.CustomerID = r.str()
	case "product_id":
		e.ProductID = r.str()
	case "quantity":
		e.Quantity = r.int64()
	case "status":
		e.Status = r.status()
	case "seq":
		e.Seq = r.int64()
	case "event_time":
		e.EventTime = r.int64()
	default:
		return false
	}
	return true
}

// UnmarshalMsgpack implements msgpack.Unmarshaler.
func (e *LineEvent) UnmarshalMsgpack(data []byte) error {
	var v LineEvent
	r := newWireReader(data)
	for n := r.mapLen(); n > 0 && r.ok; n-- {
		if !v.decodeField(&r, r.key()) {
			r.ok = false
		}
	}
	if !r.ok {
		return msgpack.Unmarshal(data, (*lineEventWire)(e))
	}
	*e = v
	return nil
}

// MarshalMsgpack implements msgpack.Marshaler.
func (l PricedLine) MarshalMsgpack() ([]byte, error) {
	b := make([]byte, 0, 176+len(l.OrderID)+len(l.CustomerID)+len(l.ProductID)+len(l.Status)+len(l.Family))
	b = l.event().appendFields(appendMapLen(b, 10))
	b = appendStr(appendStr(b, "family"), l.Family)
	b = appendInt64(appendStr(b, "unit_price_cents"), l.UnitPriceCents)
	return b, nil
}

// event is the line's event part: its first eight fields.
func (l PricedLine) event() LineEvent {
	return LineEvent{OrderID: l.OrderID, LineNo: l.LineNo, CustomerID: l.CustomerID, ProductID: l.ProductID,
		Quantity: l.Quantity, Status: l.Status, Seq: l.Seq, EventTime: l.EventTime}
}

// UnmarshalMsgpack implements msgpack.Unmarshaler.
func (l *PricedLine) UnmarshalMsgpack(data []byte) error {
	var ev LineEvent
	var family string
	var price int64
	r := newWireReader(data)
	for n := r.mapLen(); n > 0 && r.ok; n-- {
		switch k := r.key(); string(k) {
		case "family":
			family = r.family()
		case "unit_price_cents":
			price = r.int64()
		default:
			if !ev.decodeField(&r, k) {
				r.ok = false
			}
		}
	}
	if !r.ok {
		return msgpack.Unmarshal(data, (*pricedLineWire)(l))
	}
	*l = Price(ev, Product{Family: family, UnitPriceCents: price})
	return nil
}

// MarshalMsgpack implements msgpack.Marshaler.
func (p Portfolio) MarshalMsgpack() ([]byte, error) {
	b := make([]byte, 0, 160+len(p.CustomerID))
	b = appendMapLen(b, 7)
	b = appendStr(appendStr(b, "customer_id"), p.CustomerID)
	b = appendInt64(appendStr(b, "open_lines"), p.OpenLines)
	b = appendInt64(appendStr(b, "confirmed_lines"), p.ConfirmedLines)
	b = appendInt64(appendStr(b, "shipped_lines"), p.ShippedLines)
	b = appendInt64(appendStr(b, "cancelled_lines"), p.CancelledLines)
	b = appendInt64(appendStr(b, "open_value_cents"), p.OpenValueCents)
	b = appendInt64(appendStr(b, "last_event_time"), p.LastEventTime)
	return b, nil
}

// UnmarshalMsgpack implements msgpack.Unmarshaler.
func (p *Portfolio) UnmarshalMsgpack(data []byte) error {
	var v Portfolio
	r := newWireReader(data)
	for n := r.mapLen(); n > 0 && r.ok; n-- {
		switch string(r.key()) {
		case "customer_id":
			v.CustomerID = r.str()
		case "open_lines":
			v.OpenLines = r.int64()
		case "confirmed_lines":
			v.ConfirmedLines = r.int64()
		case "shipped_lines":
			v.ShippedLines = r.int64()
		case "cancelled_lines":
			v.CancelledLines = r.int64()
		case "open_value_cents":
			v.OpenValueCents = r.int64()
		case "last_event_time":
			v.LastEventTime = r.int64()
		default:
			r.ok = false
		}
	}
	if !r.ok {
		return msgpack.Unmarshal(data, (*portfolioWire)(p))
	}
	*p = v
	return nil
}
