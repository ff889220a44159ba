//! A free list of byte buffers, so that steady traffic reuses memory instead of allocating for
//! every message.

/// Recycled `Vec<u8>` buffers. Buffers keep their capacity; the pool keeps at most `limit` of
/// them, so a burst does not pin its peak memory for ever.
#[derive(Debug)]
pub(crate) struct BufPool {
    free: Vec<Vec<u8>>,
    limit: usize,
}

impl BufPool {
    pub(crate) fn new(limit: usize) -> Self {
        Self { free: Vec::new(), limit }
    }

    /// An empty buffer with room for at least `capacity` bytes.
    pub(crate) fn take(&mut self, capacity: usize) -> Vec<u8> {
        match self.free.pop() {
            Some(mut buf) => {
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

    /// Returns a buffer for reuse.
    pub(crate) fn give(&mut self, buf: Vec<u8>) {
        if self.free.len() < self.limit && buf.capacity() > 0 {
            self.free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_up_to_the_limit() {
        let mut pool = BufPool::new(1);
        let a = pool.copy_of(b"hello");
        let ptr = a.as_ptr();
        pool.give(a);
        pool.give(vec![0; 4]); // over the limit: dropped
        let b = pool.take(3);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0));
        assert!(pool.free.is_empty());
    }
}
