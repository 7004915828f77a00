;;; memlsp.el --- memlsp's completion in Emacs through Eglot  -*- lexical-binding: t; -*-

;; Usage: (load "/path/to/memlsp/editors/emacs/memlsp.el"), then M-x eglot in a Python (or
;; JS/TS, Go, Rust, Java, C/C++) buffer; M-x completion-at-point (or Corfu/Company) offers
;; memlsp's suggestion as a completion item. Eglot has no inline completion, so memlsp's ghost
;; text is not shown: the same suggestion comes as the item (multi-line ones end in " …" in the
;; list and insert in full). Eglot runs one server per major mode and project: these entries
;; take the modes below from any other server (pyright, gopls...) configured for them.
;; Tested by tests/editors/test_emacs.py (Emacs 28 and Debian's elpa-eglot 1.9).

;;; Code:

(require 'eglot)

(defgroup memlsp nil
  "Local AI code completion from memlsp, through Eglot."
  :group 'eglot)

(defcustom memlsp-command '("memlsp" "serve")
  "The server: a program and its arguments, speaking LSP over stdio.
For a checkout, e.g. (\"/path/to/memlsp/.venv/bin/memlsp\" \"serve\")."
  :type '(repeat string))

(defcustom memlsp-initialization-options nil
  "memlsp configuration sent as the LSP initializationOptions, as a plist.
The same keys as config.yaml, e.g.
  (:agents (:generator (:model \"qwen2.5-coder-0.5b\")))
Settings that may change while the server runs go in
`eglot-workspace-configuration' under :memlsp instead."
  :type 'sexp)

(defconst memlsp-modes
  ;; Eglot sends a server's first mode's language id for all its buffers: one entry per
  ;; language keeps each buffer's id right (memlsp picks the prompt and parser by it).
  '((python-mode . "python") (python-ts-mode . "python")
    (js-mode . "javascript") (js-ts-mode . "javascript")
    (typescript-mode . "typescript") (typescript-ts-mode . "typescript")
    (go-mode . "go") (go-ts-mode . "go")
    (rust-mode . "rust") (rust-ts-mode . "rust")
    (java-mode . "java") (java-ts-mode . "java")
    (c-mode . "c") (c-ts-mode . "c")
    (c++-mode . "cpp") (c++-ts-mode . "cpp"))
  "Major modes served by memlsp, with the LSP language id of each.")

(defun memlsp-contact (&optional _interactive)
  "Eglot's contact for memlsp: `memlsp-command' with the initialization options."
  (append memlsp-command
          (and memlsp-initialization-options
               (list :initializationOptions memlsp-initialization-options))))

(dolist (entry memlsp-modes)
  (add-to-list 'eglot-server-programs
               (cons (list (car entry) :language-id (cdr entry)) #'memlsp-contact)))

(provide 'memlsp)
;;; memlsp.el ends here
