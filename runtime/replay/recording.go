package replay

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrFormat is returned when a recording cannot be read.
var ErrFormat = errors.New("replay: not a choreo recording")

// formatVersion is the version of the file format written by WriteTo.
const formatVersion = 1

// Record is one recorded Kafka record.
type Record struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// Timestamp in milliseconds since the epoch.
	Timestamp int64 `json:"ts"`
	// Key and Value keep the difference between nil (null on the wire)
	// and empty.
	Key     []byte   `json:"key"`
	Value   []byte   `json:"value"`
	Headers []Header `json:"headers,omitempty"`
}

// Header is a record header.
type Header struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// FromKafka converts a franz-go record.
func FromKafka(r *kgo.Record) Record {
	out := Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, Header{Key: h.Key, Value: h.Value})
	}
	return out
}

// Kafka converts the record back to a franz-go record.
func (r Record) Kafka() *kgo.Record {
	out := &kgo.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
	out.Timestamp = timeMillis(r.Timestamp)
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return out
}

// Recording is the content of chosen topics: the records of each
// partition in offset order, and each topic's partition count.
type Recording struct {
	// Partitions is the partition count of every recorded topic.
	Partitions map[string]int32
	Records    []Record
}

// header is the first line of a recording file.
type header struct {
	Format     int              `json:"choreo_recording"`
	Partitions map[string]int32 `json:"partitions"`
	Records    int              `json:"records"`
}

// WriteTo writes the recording as JSON lines: a header line with the
// format version and the partition counts, then one record per line (key,
// value and header values base64, null for nil). The format is stable and
// readable with any JSON tool.
func (rec *Recording) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriterSize(w, 1<<16)}
	enc := json.NewEncoder(cw)
	if err := enc.Encode(header{Format: formatVersion, Partitions: rec.Partitions, Records: len(rec.Records)}); err != nil {
		return cw.n, err
	}
	for i := range rec.Records {
		if err := enc.Encode(&rec.Records[i]); err != nil {
			return cw.n, err
		}
	}
	return cw.n, cw.w.(*bufio.Writer).Flush()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Read reads a recording written by WriteTo.
func Read(r io.Reader) (*Recording, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	var h header
	if err := dec.Decode(&h); err != nil || h.Format == 0 {
		return nil, fmt.Errorf("%w: bad header: %v", ErrFormat, err)
	}
	if h.Format != formatVersion {
		return nil, fmt.Errorf("%w: format version %d, this build reads %d", ErrFormat, h.Format, formatVersion)
	}
	out := &Recording{Partitions: h.Partitions, Records: make([]Record, 0, h.Records)}
	if out.Partitions == nil {
		out.Partitions = make(map[string]int32)
	}
	for {
		var r Record
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", ErrFormat, len(out.Records)+1, err)
		}
		if r.Partition < 0 || r.Topic == "" {
			return nil, fmt.Errorf("%w: record %d has no topic or partition", ErrFormat, len(out.Records)+1)
		}
		out.Records = append(out.Records, r)
	}
	if len(out.Records) != h.Records {
		return nil, fmt.Errorf("%w: %d records, the header announces %d (truncated?)", ErrFormat, len(out.Records), h.Records)
	}
	return out, nil
}

// Save writes the recording to a file.
func (rec *Recording) Save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := rec.WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Load reads a recording file.
func Load(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rec, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rec, nil
}
