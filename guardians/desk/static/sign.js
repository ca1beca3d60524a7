// Signing decisions in the browser. The key is made by WebCrypto as Ed25519 with a
// non-extractable private half and kept in this browser's IndexedDB: no script, and not the
// server, can read it out; the server sees only the public half and the signatures it makes.
// What is signed is a small JSON statement over exactly what the guardian saw and decided
// (guardians/signing.py); the server checks every field and the signature before recording.
(function () {
  "use strict";
  var DB = "dew-signing";
  var STORE = "keys";

  function supported() {
    return window.isSecureContext && window.crypto && crypto.subtle && window.indexedDB;
  }

  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB, 1);
      request.onupgradeneeded = function () {
        request.result.createObjectStore(STORE, { keyPath: "publicKey" });
      };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }

  function inStore(mode, use) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(STORE, mode);
        var request = use(tx.objectStore(STORE));
        tx.oncomplete = function () { resolve(request.result); };
        tx.onerror = function () { reject(tx.error); };
      });
    });
  }

  function localKeys(person) {
    return inStore("readonly", function (store) { return store.getAll(); }).then(function (all) {
      return all.filter(function (k) { return k.person === person; });
    });
  }

  function base64(buffer) {
    var bytes = new Uint8Array(buffer);
    var text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text);
  }

  function sha256hex(text) {
    return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)).then(function (digest) {
      return Array.from(new Uint8Array(digest)).map(function (b) { return b.toString(16).padStart(2, "0"); }).join("");
    });
  }

  function say(element, text, warn) {
    element.textContent = text;
    element.hidden = false;
    if (warn) element.classList.add("warn");
  }

  // --- the signing-key page: create a key here and register its public half -------------------
  function keysPage(data) {
    var status = document.getElementById("browser-key-status");
    var form = document.getElementById("create-key");
    if (!status || !form) return;  // only guardians create keys
    if (!supported()) return say(status, status.dataset.unsupported, true);
    localKeys(data.person).then(function (local) {
      var here = {};
      local.forEach(function (k) { here[k.publicKey] = true; });
      var usable = null;
      data.keys.forEach(function (k) {
        if (!here[k.public_key]) return;
        var row = document.getElementById("key-" + k.id);
        if (row) row.querySelector(".this-browser").hidden = false;
        if (!k.revoked_at && usable === null) usable = k;
      });
      say(status, usable ? status.dataset.here.replace("{key}", usable.id) : status.dataset.none, !usable);
      form.hidden = false;
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      form.querySelector("button").disabled = true;
      crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]).then(function (pair) {
        return crypto.subtle.exportKey("raw", pair.publicKey).then(function (raw) {
          var record = { publicKey: base64(raw), person: data.person, privateKey: pair.privateKey,
                         created: new Date().toISOString() };
          return inStore("readwrite", function (store) { return store.put(record); }).then(function () {
            form.elements.public_key.value = record.publicKey;
            form.submit();
          });
        });
      }).catch(function (error) {
        form.querySelector("button").disabled = false;
        say(status, status.dataset.unsupported + " (" + error + ")", true);
      });
    });
  }

  // --- decision forms: sign the decision, then send it ----------------------------------------
  function decisionPage(context) {
    var status = document.getElementById("sign-status");
    var forms = document.querySelectorAll("form[data-sign]");
    var active = {};
    context.keys.forEach(function (k) { active[k.public_key] = k.id; });
    var found = supported() ? localKeys(context.signer) : Promise.resolve([]);
    found.then(function (local) {
      var key = null;
      local.forEach(function (k) {
        if (key === null && active[k.publicKey] !== undefined) key = { id: active[k.publicKey], privateKey: k.privateKey };
      });
      if (key) {
        say(status, status.dataset.willSign.replace("{key}", key.id), false);
      } else if (context.required) {
        say(status, supported() ? status.dataset.required : status.dataset.unsupported, true);
        forms.forEach(function (form) {
          form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        });
        return;
      } else {
        say(status, status.dataset.optional, false);
        return;
      }
      forms.forEach(function (form) {
        form.addEventListener("submit", function (event) {
          event.preventDefault();
          form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
          sign(form, context, key).then(function () { form.submit(); }, function (error) {
            form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
            say(status, status.dataset.unsupported + " (" + error + ")", true);
          });
        });
      });
    });
  }

  function sign(form, context, key) {
    var action = form.elements.action.value;
    var note = form.elements.note ? form.elements.note.value.trim() : "";
    var edited = action === "edit" ? form.elements.edited.value.replace(/\r\n/g, "\n") : null;
    return Promise.all([
      sha256hex(context.draft),
      edited === null ? null : sha256hex(edited),
      note ? sha256hex(note) : null,
    ]).then(function (hashes) {
      // The one canonical form the server accepts: keys in code-point order, no spaces (as
      // Python's json.dumps(sort_keys=True, separators=(",", ":")) writes it).
      var statement = JSON.stringify({
        action: action,
        at: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
        dew_decision: 1,
        draft_sha256: hashes[0],
        edited_sha256: hashes[1],
        item: context.item,
        note_sha256: hashes[2],
        signer: context.signer,
        stage: context.stage,
      });
      return crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, new TextEncoder().encode(statement))
        .then(function (signature) {
          form.elements.key_id.value = key.id;
          form.elements.statement.value = statement;
          form.elements.signature.value = base64(signature);
        });
    });
  }

  var keys = document.getElementById("dew-keys");
  if (keys) keysPage(JSON.parse(keys.textContent));
  var decision = document.getElementById("dew-sign");
  if (decision) decisionPage(JSON.parse(decision.textContent));
})();
