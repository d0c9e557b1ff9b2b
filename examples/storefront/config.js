// Where the storefront finds the gateway, and the key it calls it with.
// `?api=...&key=...` in the page address overrides these values.
//
// `key` must be a storefront key of the web shop channel (`omniretail keys create --channel webshop`):
// a publishable key, bound to one channel, with the storefront scope only. Everyone who opens the
// page can read it, so never put an admin key here.
export default {
  api: "http://127.0.0.1:8000",
  key: "",
};
