//! [`MemoryStore`]: every match in this process's memory, behind one lock (the default store:
//! one machine, no configuration).

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use sturnus_lobby::JoinCode;
use sturnus_lobby::api::{ListQuery, MatchId, MatchInfo, MatchPage, Value};

use super::index::Index;
use super::{
    Digest, JoinOutcome, JoinTicket, Schema, Store, StoreCounts, StoreError, StoredMatch, is_live,
};

/// The in-memory store: an [`Index`] behind a read-write lock. Lists share the lock; every
/// write holds it alone, so a join's checks and its change are one step.
#[derive(Debug)]
pub struct MemoryStore {
    index: RwLock<Index>,
}

impl MemoryStore {
    /// An empty store indexing the attributes `schema` declares.
    pub fn new(schema: Schema) -> Self {
        Self { index: RwLock::new(Index::new(schema)) }
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        // A panic while the lock was held left the index consistent (every change is applied
        // by `Index` in one call), so a poisoned lock is still usable.
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A live match of the index, by id.
fn live(index: &Index, id: MatchId, now_unix: u64) -> Option<&StoredMatch> {
    index.get(id).filter(|m| is_live(&m.info, now_unix))
}

/// Joins `m` if the ticket may: the core of both stores' join (the Redis store runs the same
/// checks in Lua).
pub(crate) fn join_in_place(m: &mut StoredMatch, ticket: &JoinTicket) -> JoinOutcome {
    if let Some(password) = m.password
        && ticket.password != Some(password)
    {
        return JoinOutcome::WrongPassword;
    }
    // Slots are never reused: after 65,534 joins a match has none left.
    if m.members.len() >= usize::from(m.info.size) || m.next_slot == u16::MAX {
        return JoinOutcome::Full;
    }
    let slot = m.next_slot;
    m.next_slot += 1;
    m.members.insert(slot, ticket.leave_token);
    m.info.players = u16::try_from(m.members.len()).unwrap_or(u16::MAX);
    JoinOutcome::Joined { slot, joined: Box::new(m.clone()) }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, m: StoredMatch) -> Result<(), StoreError> {
        let mut index = self.write();
        if index.get(m.info.id).is_some() {
            return Err(StoreError::IdTaken);
        }
        if index.code_holder(m.code).is_some() {
            return Err(StoreError::CodeTaken);
        }
        index.upsert(m);
        Ok(())
    }

    async fn get(&self, id: MatchId, now_unix: u64) -> Result<Option<StoredMatch>, StoreError> {
        Ok(live(&self.read(), id, now_unix).cloned())
    }

    async fn find_code(
        &self,
        code: JoinCode,
        now_unix: u64,
    ) -> Result<Option<MatchId>, StoreError> {
        let index = self.read();
        Ok(index.code_holder(code).filter(|&id| live(&index, id, now_unix).is_some()))
    }

    async fn list(&self, query: &ListQuery, now_unix: u64) -> Result<MatchPage, StoreError> {
        Ok(self.read().list(query, now_unix))
    }

    async fn join(&self, id: MatchId, ticket: &JoinTicket) -> Result<JoinOutcome, StoreError> {
        let mut index = self.write();
        if live(&index, id, ticket.now_unix).is_none() {
            return Ok(JoinOutcome::NotFound);
        }
        Ok(index.modify(id, |m| join_in_place(m, ticket)).unwrap_or(JoinOutcome::NotFound))
    }

    async fn leave(
        &self,
        id: MatchId,
        slot: u16,
        leave_token: Option<Digest>,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        let mut index = self.write();
        let Some(m) = live(&index, id, now_unix) else { return Ok(false) };
        match (m.members.get(&slot), leave_token) {
            (None, _) => return Ok(false),
            (Some(held), Some(given)) if *held != given => return Ok(false),
            _ => {}
        }
        index.modify(id, |m| {
            m.members.remove(&slot);
            m.info.players = u16::try_from(m.members.len()).unwrap_or(u16::MAX);
        });
        Ok(true)
    }

    async fn heartbeat(
        &self,
        id: MatchId,
        expires_unix: u64,
        now_unix: u64,
    ) -> Result<Option<MatchInfo>, StoreError> {
        let mut index = self.write();
        if live(&index, id, now_unix).is_none() {
            return Ok(None);
        }
        Ok(index.modify(id, |m| {
            m.info.expires_unix = expires_unix;
            m.info.clone()
        }))
    }

    async fn update(
        &self,
        id: MatchId,
        listed: Option<bool>,
        attributes: &BTreeMap<String, Value>,
        now_unix: u64,
    ) -> Result<Option<MatchInfo>, StoreError> {
        let mut index = self.write();
        if live(&index, id, now_unix).is_none() {
            return Ok(None);
        }
        Ok(index.modify(id, |m| {
            if let Some(listed) = listed {
                m.info.listed = listed;
            }
            for (k, v) in attributes {
                m.info.attributes.insert(k.clone(), v.clone());
            }
            m.info.clone()
        }))
    }

    async fn replace_code(
        &self,
        id: MatchId,
        code: JoinCode,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        let mut index = self.write();
        if live(&index, id, now_unix).is_none() {
            return Ok(false);
        }
        match index.code_holder(code) {
            Some(holder) if holder != id => return Err(StoreError::CodeTaken),
            _ => {}
        }
        index.modify(id, |m| m.code = code);
        Ok(true)
    }

    async fn destroy(&self, id: MatchId) -> Result<bool, StoreError> {
        Ok(self.write().remove(id).is_some())
    }

    async fn reap(&self, now_unix: u64) -> Result<usize, StoreError> {
        Ok(self.write().reap(now_unix))
    }

    async fn counts(&self, now_unix: u64) -> Result<StoreCounts, StoreError> {
        Ok(self.read().counts(now_unix))
    }
}
