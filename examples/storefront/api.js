// A small client for the omniretail gateway: Bearer key, JSON bodies, problem+json errors.

/** A failed call. `message` is the problem's `detail` (or a plain explanation). */
export class ApiError extends Error {
  constructor(message, { status = 0, problem = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
  }

  /** True when the outcome is unknown (no answer, a 5xx, or "still running"): a retry may reuse the Idempotency-Key. */
  get retryable() {
    return this.status === 0 || this.status === 409 || this.status >= 500;
  }
}

const enc = encodeURIComponent;

export function createClient({ api, key }) {
  const base = api.replace(/\/+$/, "");

  async function call(method, path, { body, headers = {} } = {}) {
    const init = { method, headers: { Authorization: `Bearer ${key}`, Accept: "application/json", ...headers } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(base + path, init);
    } catch {
      throw new ApiError(
        `Could not reach the gateway at ${base}. Is it running, and is this page's origin ` +
          `(${window.location.origin}) listed in [gateway] cors_origins?`,
      );
    }
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json().catch(() => null) : null;
    if (!response.ok) {
      // RFC 9457 problem+json: `detail` says what went wrong, for people.
      const message = data?.detail || data?.title || `The gateway answered ${response.status}.`;
      throw new ApiError(message, { status: response.status, problem: data });
    }
    return data;
  }

  return {
    products: (cursor) => call("GET", `/v1/products?limit=20${cursor ? `&cursor=${enc(cursor)}` : ""}`),
    availability: (sku) => call("GET", `/v1/availability/${enc(sku)}`),
    createCart: () => call("POST", "/v1/carts"),
    cart: (cartId) => call("GET", `/v1/carts/${enc(cartId)}`),
    addLine: (cartId, sku, quantity = 1) => call("POST", `/v1/carts/${enc(cartId)}/lines`, { body: { sku, quantity } }),
    setLine: (cartId, sku, quantity) =>
      call("PUT", `/v1/carts/${enc(cartId)}/lines/${enc(sku)}`, { body: { quantity } }),
    removeLine: (cartId, sku) => call("DELETE", `/v1/carts/${enc(cartId)}/lines/${enc(sku)}`),
    handOff: (cartId) => call("POST", `/v1/carts/${enc(cartId)}/handoff`),
    claim: (code) => call("POST", `/v1/carts/handoffs/${enc(code)}/claim`),
    // The key is an RFC 8941 string: quoted.
    checkout: (cartId, body, idempotencyKey) =>
      call("POST", `/v1/carts/${enc(cartId)}/checkout`, { body, headers: { "Idempotency-Key": `"${idempotencyKey}"` } }),
    lookupOrder: (number, email) => call("GET", `/v1/orders/lookup?number=${enc(number)}&email=${enc(email)}`),
  };
}
