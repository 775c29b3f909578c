//! BizKitHub's customer endpoints as rules over the store: create, detail, and the
//! manager → customer relations with their two-sided pages.

use crate::normalize::{ClientIp, CuRefNo, IdentityId};
use crate::store::split_page;
use crate::store::{
    CreateCustomer, CustomerFilter, Detail, DynStore, ListedCustomer, MatchItem, MatchOutcome, MatchTarget, PagePos,
    Profile, RemoveOutcome, Side, SpaceId, StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum CustomerError {
    /// The customer asked about does not exist (or was erased).
    #[error("no customer with this cuRefNo exists")]
    NotFound,
    /// The manager of a relation does not exist.
    #[error("no customer with the managerCuRefNo exists")]
    ManagerNotFound,
    /// The managed side of a relation does not exist.
    #[error("no customer with the customerCuRefNo exists")]
    TargetNotFound,
    #[error("a customer cannot be matched with itself")]
    SelfMatch,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type CustomerResult<T> = Result<T, CustomerError>;

/// Where each side of a relation list resumes; `None` for a side that is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchCursor {
    pub managers: Option<PagePos>,
    pub customers: Option<PagePos>,
}

impl MatchCursor {
    /// Both sides from their newest relation.
    pub const START: MatchCursor = MatchCursor { managers: Some(PagePos::TOP), customers: Some(PagePos::TOP) };
}

/// One page of both sides of a customer's relations.
pub struct MatchPage {
    pub managers: Vec<MatchItem>,
    pub customers: Vec<MatchItem>,
    /// Where the next page starts; `None` when both sides are exhausted.
    pub next: Option<MatchCursor>,
}

/// The customer operations in one data space.
pub struct Customers<'a> {
    store: &'a DynStore,
    space: SpaceId,
}

impl<'a> Customers<'a> {
    pub fn new(store: &'a DynStore, space: SpaceId) -> Self {
        Customers { store, space }
    }

    /// Finds the customer by canonical e-mail or creates one; true when created.
    pub async fn create(&self, input: &CreateCustomer) -> CustomerResult<(bool, Profile)> {
        Ok(self.store.find_or_create_by_email(self.space, input).await?)
    }

    /// The profile, and whether `identity` is a live session of this customer.
    pub async fn detail(&self, cu: &CuRefNo, identity: &IdentityId, ip: &ClientIp) -> CustomerResult<Detail> {
        let detail = self.store.customer_detail(self.space, cu, &identity.digest(), ip).await?;
        detail.ok_or(CustomerError::NotFound)
    }

    /// Relates the manager to the target, keeping (or replacing) the notice.
    pub async fn match_customer(
        &self,
        manager: &CuRefNo,
        target: &MatchTarget,
        notice: Option<&str>,
    ) -> CustomerResult<()> {
        match self.store.upsert_match(self.space, manager, target, notice).await? {
            MatchOutcome::Matched => Ok(()),
            MatchOutcome::ManagerNotFound => Err(CustomerError::ManagerNotFound),
            MatchOutcome::CustomerNotFound => Err(CustomerError::TargetNotFound),
            MatchOutcome::SelfMatch => Err(CustomerError::SelfMatch),
        }
    }

    /// Up to `limit` of each side, newest first, from `from`.
    pub async fn match_list(&self, cu: &CuRefNo, limit: i64, from: MatchCursor) -> CustomerResult<MatchPage> {
        if !self.store.customer_exists(self.space, cu).await? {
            return Err(CustomerError::NotFound);
        }
        let (managers, next_managers) = self.side(cu, Side::Managers, from.managers, limit).await?;
        let (customers, next_customers) = self.side(cu, Side::Customers, from.customers, limit).await?;
        let next = MatchCursor { managers: next_managers, customers: next_customers };
        let more = next.managers.is_some() || next.customers.is_some();
        Ok(MatchPage { managers, customers, next: more.then_some(next) })
    }

    /// One side's page and where it continues, if it does.
    async fn side(
        &self,
        cu: &CuRefNo,
        side: Side,
        from: Option<PagePos>,
        limit: i64,
    ) -> CustomerResult<(Vec<MatchItem>, Option<PagePos>)> {
        let Some(from) = from else { return Ok((Vec::new(), None)) };
        let items = self.store.list_matches(self.space, cu, side, from, limit + 1).await?;
        Ok(split_page(items, limit, MatchItem::page_pos))
    }

    /// Up to `limit` customers passing `filter`, newest first, from `from`; and where the
    /// next page starts, if there is one.
    pub async fn list(
        &self,
        filter: &CustomerFilter,
        limit: i64,
        from: PagePos,
    ) -> CustomerResult<(Vec<ListedCustomer>, Option<PagePos>)> {
        let items = self.store.list_customers(self.space, filter, from, limit + 1).await?;
        Ok(split_page(items, limit, ListedCustomer::page_pos))
    }

    /// Removes the relation; false if there was none.
    pub async fn match_remove(&self, manager: &CuRefNo, customer: &CuRefNo) -> CustomerResult<bool> {
        match self.store.remove_match(self.space, manager, customer).await? {
            RemoveOutcome::Removed(removed) => Ok(removed),
            RemoveOutcome::ManagerNotFound => Err(CustomerError::ManagerNotFound),
            RemoveOutcome::CustomerNotFound => Err(CustomerError::TargetNotFound),
        }
    }
}
