//! A free list of byte buffers, so that steady traffic reuses memory instead of allocating for
//! every message.

/// Recycled `Vec<u8>` buffers. Buffers keep their capacity, so what the pool retains is bounded
/// three ways, and a burst (or an attack) does not pin its peak memory for ever:
///
/// - a buffer with more than `max_buffer` bytes of capacity is freed, not kept (large
///   reassembly buffers are rare, and copying that much data costs far more than allocating
///   it);
/// - the capacities of the kept buffers add up to at most `max_bytes`;
/// - at most `max_count` buffers are kept (the list itself is memory too).
#[derive(Debug)]
pub(crate) struct BufPool {
    free: Vec<Vec<u8>>,
    /// Sum of the capacities in `free`.
    bytes: usize,
    max_bytes: usize,
    max_buffer: usize,
    max_count: usize,
}

impl BufPool {
    pub(crate) fn new(max_bytes: usize, max_buffer: usize, max_count: usize) -> Self {
        Self { free: Vec::new(), bytes: 0, max_bytes, max_buffer, max_count }
    }

    /// An empty buffer with room for at least `capacity` bytes.
    pub(crate) fn take(&mut self, capacity: usize) -> Vec<u8> {
        match self.free.pop() {
            Some(mut buf) => {
                self.bytes -= buf.capacity();
                buf.clear();
                buf.reserve(capacity);
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// A buffer holding a copy of `data`.
    pub(crate) fn copy_of(&mut self, data: &[u8]) -> Vec<u8> {
        let mut buf = self.take(data.len());
        buf.extend_from_slice(data);
        buf
    }

    /// Returns a buffer for reuse; it is freed instead when it is large or the pool is full.
    pub(crate) fn give(&mut self, buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity > 0
            && capacity <= self.max_buffer
            && self.bytes + capacity <= self.max_bytes
            && self.free.len() < self.max_count
        {
            self.bytes += capacity;
            self.free.push(buf);
        }
    }

    /// Bytes of capacity the pool holds.
    #[cfg(test)]
    pub(crate) fn retained_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_up_to_the_count_limit() {
        let mut pool = BufPool::new(1 << 20, 1 << 10, 1);
        let a = pool.copy_of(b"hello");
        let ptr = a.as_ptr();
        pool.give(a);
        pool.give(vec![0; 4]); // over the count limit: dropped
        let b = pool.take(3);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0));
        assert!(pool.free.is_empty());
        assert_eq!(pool.retained_bytes(), 0);
    }

    #[test]
    fn large_buffers_are_freed_and_the_pool_keeps_at_most_its_byte_budget() {
        let mut pool = BufPool::new(1000, 600, 100);
        pool.give(Vec::with_capacity(601)); // larger than a pooled buffer may be
        assert_eq!(pool.retained_bytes(), 0);
        pool.give(Vec::with_capacity(600));
        pool.give(Vec::with_capacity(300));
        pool.give(Vec::with_capacity(300)); // would take the pool past 1000 bytes
        assert_eq!(pool.retained_bytes(), 900);
        assert_eq!(pool.free.len(), 2);
        let taken = pool.take(10);
        assert_eq!(pool.retained_bytes(), 900 - taken.capacity());
        pool.give(taken);
        assert_eq!(pool.retained_bytes(), 900);
    }
}
