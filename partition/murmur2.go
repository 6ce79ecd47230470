package partition

import "encoding/binary"

// murmur2Seed is the seed of Kafka's Utils.murmur2.
const murmur2Seed uint32 = 0x9747b28c

// Murmur2 returns the 32-bit murmur2 hash of data exactly as the Java
// client's org.apache.kafka.common.utils.Utils.murmur2 computes it (seed
// 0x9747b28c), as a signed int32 like Java's int. It does not allocate.
func Murmur2(data []byte) int32 {
	const (
		m = 0x5bd1e995
		r = 24
	)
	h := murmur2Seed ^ uint32(len(data))
	for len(data) >= 4 {
		k := binary.LittleEndian.Uint32(data)
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// ForKey returns the partition, out of partitions, that the Java producer's
// default partitioner (BuiltInPartitioner.partitionForKey) picks for a record
// with a non-nil key: toPositive(murmur2(key)) % partitions, where toPositive
// clears the sign bit. Java and Go services that use it agree on which
// partition, and therefore which task, a key belongs to.
//
// A nil key is hashed like an empty one; Java producers spread records with a
// null key instead of hashing them. ForKey panics if partitions is not
// positive, as Java throws on a division by zero.
func ForKey(key []byte, partitions int32) int32 {
	if partitions <= 0 {
		panic("partition: ForKey with a non-positive partition count")
	}
	return (Murmur2(key) & 0x7fffffff) % partitions
}
