// The example storefront: catalog, cart, handoff QR, pickup checkout and order tracking,
// all through the omniretail gateway. Prices and totals always come from the server.
import { ApiError, createClient } from "./api.js";

const $ = (id) => document.getElementById(id);

// -- configuration: config.js, overridden by ?api=...&key=... -----------------------------------

const params = new URLSearchParams(window.location.search);
const defaults = await import("./config.js").then(
  (module) => module.default ?? {},
  () => ({}),
);
const config = {
  api: params.get("api") || defaults.api || "",
  key: params.get("key") || defaults.key || "",
};

const state = { cart: null, nextCursor: null, stores: new Map(), tracking: null, order: null };

// -- small helpers --------------------------------------------------------------------------------

/** An element with attributes and children; text is always text (no HTML from the server). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((child) => child != null && child !== false));
  return el;
}

// Amounts are integer minor units; these ISO 4217 currencies do not have two decimals.
const MINOR_DIGITS = { CLF: 4, UYW: 4, BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3 };
for (const code of "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(" ")) {
  MINOR_DIGITS[code] = 0;
}
const formatters = new Map();

function money(amount, currency) {
  const digits = MINOR_DIGITS[currency] ?? 2;
  if (!formatters.has(currency)) {
    const options = { style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits };
    formatters.set(currency, new Intl.NumberFormat(undefined, options));
  }
  return formatters.get(currency).format(amount / 10 ** digits);
}

function showAmount(el, amount, currency) {
  el.textContent = money(amount, currency);
  el.dataset.amount = String(amount);
}

function showTime(el, iso) {
  el.dateTime = iso;
  el.textContent = new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const storageKey = (name) => `omniretail-storefront:${config.api}:${name}`;

function remember(name, value) {
  try {
    if (value == null) localStorage.removeItem(storageKey(name));
    else localStorage.setItem(storageKey(name), JSON.stringify(value));
  } catch {
    // storage disabled: the page still works, it just forgets on reload
  }
}

function recall(name) {
  try {
    return JSON.parse(localStorage.getItem(storageKey(name)));
  } catch {
    return null;
  }
}

function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function notice(text) {
  $("notice").textContent = text;
}

function showError(error) {
  if (!(error instanceof ApiError)) console.error(error);
  const box = $("error");
  box.textContent = error instanceof ApiError ? error.message : `Something went wrong: ${error.message ?? error}`;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// One action at a time, in order: two quick clicks never race each other on the same cart.
let queue = Promise.resolve();

function act(task) {
  queue = queue.then(async () => {
    $("shop").setAttribute("aria-busy", "true");
    try {
      clearError();
      await task();
    } catch (error) {
      showError(error);
    } finally {
      $("shop").setAttribute("aria-busy", "false");
    }
  });
  return queue;
}

// -- catalog --------------------------------------------------------------------------------------

const AVAILABILITY = { in_stock: "In stock", low_stock: "Low stock", out_of_stock: "Out of stock" };

async function loadProducts({ more = false } = {}) {
  const page = await client.products(more ? state.nextCursor : undefined);
  const items = page.items.map(productItem);
  if (more) $("products").append(...items);
  else $("products").replaceChildren(...items);
  state.nextCursor = page.next_cursor;
  $("more-products").hidden = !page.next_cursor;
}

function productItem(product) {
  return h(
    "li",
    { class: "product", "data-product": product.handle },
    h("h3", {}, product.title),
    product.description ? h("p", {}, product.description) : null,
    h("ul", { class: "variants" }, product.variants.map((variant) => variantItem(product, variant))),
  );
}

function variantItem(product, variant) {
  const name = variant.title ? `${product.title}, ${variant.title}` : product.title;
  const buyable = variant.price != null && variant.availability !== "out_of_stock";
  const stock =
    variant.availability === "low_stock"
      ? `Only ${variant.available} left`
      : (AVAILABILITY[variant.availability] ?? variant.availability);
  return h(
    "li",
    { "data-sku": variant.sku },
    variant.title ? h("span", { class: "variant" }, variant.title) : null,
    h(
      "span",
      { class: "price", "data-amount": variant.price?.amount },
      variant.price ? money(variant.price.amount, variant.price.currency) : "Not for sale",
    ),
    h("span", { class: `stock ${variant.availability}`, "data-availability": variant.availability }, stock),
    // The name starts with the visible text and says which product ("Add to cart: Espresso").
    h(
      "button",
      {
        type: "button",
        "aria-label": `Add to cart: ${name}`,
        disabled: !buyable,
        onclick: () => act(() => addToCart(variant.sku, name)),
      },
      "Add to cart",
    ),
  );
}

// -- cart -----------------------------------------------------------------------------------------

function setCart(cart) {
  state.cart = cart;
  remember("cart", cart?.id);
  renderCart();
}

async function addToCart(sku, name) {
  if (!state.cart) setCart(await client.createCart());
  setCart(await client.addLine(state.cart.id, sku, 1));
  await refreshStores();
  notice(`Added ${name} to your cart.`);
}

async function changeQuantity(sku, quantity) {
  try {
    setCart(quantity === 0 ? await client.removeLine(state.cart.id, sku) : await client.setLine(state.cart.id, sku, quantity));
  } catch (error) {
    renderCart(); // put the quantity back as the server has it
    throw error;
  }
  await refreshStores();
}

async function restoreCart(cartId, { quiet }) {
  try {
    const cart = await client.cart(cartId);
    setCart(cart.status === "open" ? cart : null);
  } catch (error) {
    if (!(quiet && error.status === 404)) throw error;
    setCart(null);
  }
  await refreshStores();
}

function renderCart() {
  const cart = state.cart;
  const lines = cart?.lines ?? [];
  $("cart-empty").hidden = lines.length > 0;
  $("cart").hidden = lines.length === 0;
  $("checkout").hidden = lines.length === 0;
  if (!cart) {
    $("handoff").hidden = true;
    delete $("cart").dataset.cartId;
    return;
  }
  $("cart").dataset.cartId = cart.id;
  $("cart-lines").replaceChildren(...lines.map((line) => cartRow(cart, line)));
  $("cart-offers").replaceChildren(
    ...cart.offers.map((offer) => h("li", {}, `${offer.title}: −${money(offer.amount, cart.currency)}`)),
  );
  showAmount($("cart-subtotal"), cart.subtotal, cart.currency);
  showAmount($("cart-discount"), cart.discount, cart.currency);
  showAmount($("cart-total"), cart.total, cart.currency);
  const gone = cart.unavailable ?? [];
  $("cart-unavailable").hidden = gone.length === 0;
  $("cart-unavailable").textContent = `No longer for sale: ${gone.join(", ")}. Remove to check out.`;
}

function cartRow(cart, line) {
  const id = `quantity-${line.sku}`;
  const input = h("input", {
    id,
    type: "number",
    min: 0,
    max: 999,
    step: 1,
    inputmode: "numeric",
    value: line.quantity,
    onchange: () => {
      const quantity = Number(input.value);
      if (!Number.isInteger(quantity) || input.value === "") {
        input.value = String(line.quantity);
        showError(new ApiError("Enter a whole number of units (0 removes the item)."));
        return;
      }
      act(() => changeQuantity(line.sku, quantity));
    },
  });
  return h(
    "tr",
    { "data-sku": line.sku },
    h("th", { scope: "row" }, line.title, " ", h("small", {}, line.sku)),
    h("td", {}, h("label", { for: id, class: "visually-hidden" }, `Quantity of ${line.title}`), input),
    h("td", { class: "num" }, money(line.unit_price, cart.currency)),
    h("td", { class: "num", "data-amount": line.total }, money(line.total, cart.currency)),
    h(
      "td",
      {},
      h(
        "button",
        {
          type: "button",
          "aria-label": `Remove: ${line.title}`,
          onclick: () => act(() => changeQuantity(line.sku, 0)),
        },
        "Remove",
      ),
    ),
  );
}

// -- handoff: continue this cart elsewhere --------------------------------------------------------

async function handOff() {
  const handoff = await client.handOff(state.cart.id);
  $("handoff-code").textContent = handoff.code;
  const qr = $("handoff-qr");
  if (handoff.qr_png.startsWith("data:image/png;base64,")) qr.src = handoff.qr_png;
  qr.alt = `QR code that opens this cart on another device, code ${handoff.code}`;
  const link = $("handoff-link");
  link.hidden = !/^https?:\/\//i.test(handoff.url);
  link.href = link.hidden ? "#" : handoff.url;
  link.textContent = handoff.url;
  showTime($("handoff-expires"), handoff.expires_at);
  $("handoff").hidden = false;
  notice(`Handoff code ${handoff.code} is ready.`);
}

async function claimHandoff(code) {
  setCart(await client.claim(code));
  await refreshStores();
  notice(`Your cart from code ${code} is here.`);
}

// -- checkout: pick up in store -------------------------------------------------------------------

/** Stores that do pickup, each marked whether it has every line of the cart in stock. */
async function refreshStores() {
  const select = $("checkout-store");
  const cart = state.cart;
  const gone = new Set(cart?.unavailable ?? []);
  const lines = (cart?.lines ?? []).filter((line) => !gone.has(line.sku));
  if (lines.length === 0) {
    select.replaceChildren();
    return;
  }
  const reports = await Promise.all(lines.map((line) => client.availability(line.sku)));
  const stores = new Map();
  reports.forEach((report, i) => {
    for (const location of report.locations) {
      if (!location.pickup) continue;
      const store = stores.get(location.location_id) ?? { ...location, stocked: true };
      store.stocked &&= location.available >= lines[i].quantity;
      stores.set(location.location_id, store);
    }
  });
  for (const store of stores.values()) state.stores.set(store.location_id, store.name);
  const previous = select.value;
  const options = [...stores.values()].map((store) =>
    h(
      "option",
      { value: store.location_id, disabled: !store.stocked },
      store.stocked
        ? `${store.name} (ready in about ${store.preparation_minutes} min)`
        : `${store.name} (not everything in stock)`,
    ),
  );
  const usable = [...stores.values()].filter((store) => store.stocked);
  if (usable.length === 0) options.unshift(h("option", { value: "" }, "No store has everything in stock"));
  select.replaceChildren(...options);
  select.value = (usable.find((store) => store.location_id === previous) ?? usable[0])?.location_id ?? "";
}

let pendingCheckout = null; // an attempt whose outcome is unknown: a retry reuses its Idempotency-Key

async function checkout() {
  const cart = state.cart;
  if (!cart || cart.lines.length === 0) return;
  const body = {
    fulfilment: "pickup",
    pickup_location_id: $("checkout-store").value,
    email: $("checkout-email").value.trim(),
  };
  const same =
    pendingCheckout?.cartId === cart.id && JSON.stringify(pendingCheckout.body) === JSON.stringify(body);
  const attempt = same ? pendingCheckout : { cartId: cart.id, body, key: newIdempotencyKey() };
  pendingCheckout = attempt;
  let order;
  try {
    order = await client.checkout(cart.id, body, attempt.key);
  } catch (error) {
    const unknown = error.status === 0 || error.status >= 500 || error.problem?.type?.endsWith("/idempotency-in-flight");
    if (!unknown) pendingCheckout = null;
    throw error;
  }
  pendingCheckout = null;
  setCart(null);
  $("handoff").hidden = true;
  track({ number: order.number, email: body.email });
  showOrder(order);
  notice(`Thank you! Order ${order.number} is placed.`);
  await loadProducts(); // stock has changed
}

// -- order tracking -------------------------------------------------------------------------------

const STATUS = {
  placed: "Placed",
  paid: "Paid",
  ready_for_pickup: "Ready for pickup",
  shipped: "Shipped",
  delivered: "Delivered",
  collected: "Collected",
  cancelled: "Cancelled",
  returned: "Returned",
};
const FINAL = new Set(["delivered", "collected", "cancelled", "returned"]);
const POLL_MS = 15_000;
let pollTimer = null;

function track(tracking) {
  state.tracking = tracking;
  remember("order", tracking);
  $("track-number").value = tracking.number;
  $("track-email").value = tracking.email;
}

/** Look an order up by number and e-mail; only a found order replaces the one being tracked. */
async function findOrder(tracking) {
  const order = await client.lookupOrder(tracking.number, tracking.email);
  track(tracking);
  showOrder(order);
}

async function refreshOrder({ quiet = false } = {}) {
  if (!state.tracking) return;
  try {
    showOrder(await client.lookupOrder(state.tracking.number, state.tracking.email));
  } catch (error) {
    if (quiet && error.status === 404) return remember("order", null);
    schedulePoll();
    throw error;
  }
}

function showOrder(order) {
  state.order = order;
  $("order").hidden = false;
  $("order-number").textContent = order.number;
  const status = $("order-status");
  if (status.dataset.status !== order.status) {
    status.dataset.status = order.status;
    status.textContent = STATUS[order.status] ?? order.status;
  }
  const parts = [`Total ${money(order.total, order.currency)}`];
  if (order.fulfilment === "pickup") {
    const store = state.stores.get(order.pickup_location_id) ?? order.pickup_location_id;
    parts.push(`pick up at ${store}`);
    if (order.ready_by) {
      parts.push(`ready by ${new Date(order.ready_by).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`);
    }
  }
  $("order-summary").textContent = parts.join(" · ");
  $("order-lines").replaceChildren(
    ...order.lines.map((line) => h("li", {}, `${line.quantity} × ${line.title} — ${money(line.total, order.currency)}`)),
  );
  showTime($("order-checked"), new Date().toISOString());
  schedulePoll();
}

function schedulePoll() {
  clearTimeout(pollTimer);
  if (!state.order || FINAL.has(state.order.status)) return;
  pollTimer = setTimeout(() => {
    if (document.hidden) schedulePoll();
    else act(refreshOrder);
  }, POLL_MS);
}

// -- start ----------------------------------------------------------------------------------------

const client = createClient(config);

function dropParam(name) {
  const url = new URL(window.location.href);
  url.searchParams.delete(name);
  window.history.replaceState(null, "", url);
}

async function start() {
  if (!config.api || !config.key) {
    showError(
      new ApiError(
        "Set the gateway URL and a storefront key: edit config.js, or open this page with ?api=...&key=... (see README.md).",
      ),
    );
    $("shop").setAttribute("aria-busy", "false");
    return;
  }
  $("more-products").addEventListener("click", () => act(() => loadProducts({ more: true })));
  $("handoff-button").addEventListener("click", () => act(handOff));
  $("order-refresh").addEventListener("click", () => act(refreshOrder));
  $("checkout-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act(checkout);
  });
  $("track-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const tracking = { number: $("track-number").value.trim(), email: $("track-email").value.trim() };
    act(() => findOrder(tracking));
  });

  act(loadProducts);
  const handoff = params.get("handoff");
  const cartId = params.get("cart");
  if (handoff) {
    dropParam("handoff"); // a reload must not claim the code again
    act(() => claimHandoff(handoff));
  } else if (cartId) {
    act(() => restoreCart(cartId, { quiet: false }));
  } else if (recall("cart")) {
    act(() => restoreCart(recall("cart"), { quiet: true }));
  }
  const tracking = recall("order");
  if (tracking?.number && tracking?.email) {
    track(tracking);
    act(() => refreshOrder({ quiet: true }));
  }
}

start();
