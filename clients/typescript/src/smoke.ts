// A client generated from openapi.yaml, used the way a storefront would use it. Every call
// goes through the generated `paths` types, so a contract that drifts from the server shows
// up either here at `tsc` time (a renamed field, a changed shape) or at run time (a status
// or body the contract does not promise).
//
// Environment: BIZKIT_BASE_URL (e.g. http://127.0.0.1:8080) and BIZKIT_API_KEY. The server
// must auto-confirm registrations, as it does under `--demo`.

import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type ErrorBody = components["schemas"]["Error"];

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    fail(`${name} is not set`);
  }
  return value;
}

function fail(message: string): never {
  console.error(`smoke: FAIL: ${message}`);
  process.exit(1);
}

// openapi-fetch hands back either `data` (a 2xx body) or `error` (any other body); the
// status and error envelope make the failure readable without re-running by hand.
function expectData<T>(
  step: string,
  result: { data?: T; error?: unknown; response: Response },
): T {
  if (!result.response.ok || result.data === undefined) {
    const body = JSON.stringify(result.error ?? null);
    fail(`${step}: HTTP ${result.response.status}, body ${body}`);
  }
  return result.data;
}

function check(step: string, condition: boolean, detail: unknown): void {
  if (!condition) {
    fail(`${step}: unexpected response ${JSON.stringify(detail)}`);
  }
}

const baseUrl = env("BIZKIT_BASE_URL");
const apiKey = env("BIZKIT_API_KEY");

// The Bearer header is one of the contract's two security schemes; sending the key there
// keeps it out of URLs (and so out of access logs) the way a careful client would.
const client = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${apiKey}` },
});

// Unique per run: registration allows one attempt per address per ten minutes, and a
// rerun against the same server must not collide with the previous run's contacts.
const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e9).toString(36)}`;
const managerEmail = `smoke.manager.${run}@example.com`;
const customerEmail = `smoke.customer.${run}@example.com`;
const password = `Smoke1${run}`;

// 1. Two customers through the create endpoint.
const manager = expectData(
  "create manager",
  await client.POST("/api/v1/customer/create", {
    body: { email: managerEmail, companyName: "Smoke Gym", customerRealIp: "1.1.1.1" },
  }),
);
check("create manager", manager.success && manager.newAccount && manager.email === managerEmail, manager);
check("create manager", manager.companyName === "Smoke Gym", manager);

const customer = expectData(
  "create customer",
  await client.POST("/api/v1/customer/create", { body: { email: customerEmail } }),
);
check("create customer", customer.success && customer.newAccount, customer);
check("create customer", customer.cuRefNo !== manager.cuRefNo, { manager, customer });

// 2. Relate them, then read the relation back from both sides.
const notice = `smoke run ${run}`;
const matched = expectData(
  "customer-match-customer",
  await client.POST("/api/v1/customer/customer-match-customer", {
    body: { managerCuRefNo: manager.cuRefNo, customerCuRefNo: customer.cuRefNo, notice },
  }),
);
check("customer-match-customer", matched.success, matched);

const managerSide = expectData(
  "customer-match-list (manager)",
  await client.GET("/api/v1/customer/customer-match-list", {
    params: { query: { cuRefNo: manager.cuRefNo } },
  }),
);
const listed = managerSide.customers.find((item) => item.cuRefNo === customer.cuRefNo);
check("customer-match-list (manager)", listed !== undefined, managerSide);
check("customer-match-list (manager)", listed?.notice === notice && listed.email === customerEmail, listed);

const customerSide = expectData(
  "customer-match-list (customer)",
  await client.GET("/api/v1/customer/customer-match-list", {
    params: { query: { cuRefNo: customer.cuRefNo } },
  }),
);
check(
  "customer-match-list (customer)",
  customerSide.managers.some((item) => item.cuRefNo === manager.cuRefNo),
  customerSide,
);

// 3. The customer (a guest so far) registers a storefront account, logs in, and the
//    session reads as theirs through detail.
const registered = expectData(
  "register-account",
  await client.POST("/contact/v1/register-account", {
    body: { email: customerEmail, password, name: "Smoke Customer" },
  }),
);
if (!registered.success) {
  fail(`register-account: refused with ${registered.errorCode}: ${registered.message}`);
}

const login = expectData(
  "login",
  await client.POST("/contact/v1/login", { body: { email: customerEmail, password } }),
);
if (!login.success) {
  fail(`login: refused with ${login.errorCode}: ${login.message}`);
}

const detail = expectData(
  "detail",
  await client.GET("/api/v1/customer/detail", {
    params: {
      query: { identityId: login.identityId, cuRefNo: customer.cuRefNo, customerRealIp: "::1" },
    },
  }),
);
if (!detail.loggedIn) {
  fail(`detail: expected loggedIn: true for the new session, got ${JSON.stringify(detail)}`);
}
check("detail", detail.cuRefNo === customer.cuRefNo && detail.email === customerEmail, detail);
check("detail", detail.firstName === "Smoke" && detail.lastName === "Customer", detail);

// 4. A refusal comes back in the error envelope the contract describes, typed as such.
const refused = await client.GET("/api/v1/customer/detail", {
  params: { query: { identityId: login.identityId, cuRefNo: "0000000000000000" } },
});
const refusal: ErrorBody | undefined = refused.error;
check(
  "detail (unknown cuRefNo)",
  refused.response.status === 404 && refusal?.error.code === "CUSTOMER_NOT_FOUND",
  { status: refused.response.status, body: refusal },
);

console.log(`smoke: OK (manager ${manager.cuRefNo}, customer ${customer.cuRefNo})`);
