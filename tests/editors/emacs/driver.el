;;; driver.el --- the Emacs session of tests/editors/test_emacs.py  -*- lexical-binding: t; -*-

;; Run as `emacs --batch -Q --eval ACTIVATE -l driver.el FILE` (ACTIVATE: test_emacs.py's
;; package activation, so that Eglot loads). Loads editors/emacs/memlsp.el, opens FILE,
;; starts the real server through Eglot, asks `completion-at-point' for candidates at the end
;; of FILE, then runs `completion-at-point' itself, and writes what it saw to the JSON file
;; $MEMLSP_EMACS_OUT. Inputs: $MEMLSP_EMACS_EL (memlsp.el), $MEMLSP_EMACS_SERVER (the command,
;; a JSON list), $MEMLSP_EMACS_OPTIONS (initializationOptions, JSON), $MEMLSP_EMACS_WAIT_S.

;;; Code:

(require 'json)
(require 'package)
(require 'eglot)

(defvar memlsp-command)  ; from memlsp.el, loaded below
(defvar memlsp-initialization-options)
(defvar memlsp-test-result nil "Alist written as the JSON result.")
(defvar memlsp-test-wait (string-to-number (or (getenv "MEMLSP_EMACS_WAIT_S") "240")))

(defun memlsp-test-put (key value)
  (setf (alist-get key memlsp-test-result) value))

(defun memlsp-test-logs ()
  "The tail of each Eglot buffer (events, server stderr): why a failing run failed."
  (let (logs)
    (dolist (buf (buffer-list) logs)
      (when (string-prefix-p "*EGLOT" (buffer-name buf))
        (with-current-buffer buf
          (push (cons (buffer-name buf)
                      (buffer-substring-no-properties (max (point-min) (- (point-max) 6000))
                                                      (point-max)))
                logs))))))

(defun memlsp-test-write ()
  (memlsp-test-put 'logs (memlsp-test-logs))
  (let ((json-encoding-pretty-print t))
    (with-temp-file (getenv "MEMLSP_EMACS_OUT")
      (insert (json-encode memlsp-test-result)))))

(defun memlsp-test-wait-for (what predicate)
  "Let processes run until PREDICATE holds; an error naming WHAT after the wait."
  (let ((deadline (+ (float-time) memlsp-test-wait)))
    (while (not (funcall predicate))
      (when (> (float-time) deadline)
        (error "Timed out after %s s waiting for %s" memlsp-test-wait what))
      (accept-process-output nil 0.1))))

(condition-case err
    (let ((file (car command-line-args-left))
          (started (float-time)))
      (setq command-line-args-left nil)  ; FILE is ours: Emacs must not visit it after us
      (memlsp-test-put 'emacs emacs-version)
      (memlsp-test-put 'eglot (or (ignore-errors
                                    (package-version-join
                                     (package-desc-version
                                      (cadr (assq 'eglot package-alist)))))
                                  "unknown"))
      (load (getenv "MEMLSP_EMACS_EL") nil t)
      (setq memlsp-command (append (json-read-from-string (getenv "MEMLSP_EMACS_SERVER")) nil)
            memlsp-initialization-options
            (let ((json-object-type 'plist))
              (json-read-from-string (getenv "MEMLSP_EMACS_OPTIONS"))))
      ;; A busy 2-core machine: the model loads on the first request, well past the defaults.
      (setq eglot-sync-connect nil
            eglot-connect-timeout memlsp-test-wait
            jsonrpc-default-request-timeout memlsp-test-wait)
      (find-file file)
      (goto-char (point-max))
      (memlsp-test-put 'mode (symbol-name major-mode))
      (apply #'eglot (eglot--guess-contact))
      (memlsp-test-wait-for "Eglot to manage the buffer" #'eglot-managed-p)
      (let ((server (eglot-current-server)))
        (memlsp-test-put 'server (plist-get (eglot--server-info server) :name))
        (memlsp-test-put 'language_id (eglot--language-id server))
        (memlsp-test-put 'connected_s (- (float-time) started)))
      ;; What completion-at-point offers here: Eglot's function is on the buffer's list.
      (memlsp-test-put 'capf_functions
                       (mapcar #'prin1-to-string completion-at-point-functions))
      (let* ((capf (run-hook-wrapped 'completion-at-point-functions
                                     (lambda (fn) (and (functionp fn) (funcall fn)))))
             (asked (float-time))
             (candidates (all-completions "" (nth 2 capf)))
             (annotate (plist-get (nthcdr 3 capf) :annotation-function)))
        (memlsp-test-put 'completion_s (- (float-time) asked))
        (memlsp-test-put 'candidates (vconcat candidates))
        (memlsp-test-put 'annotations
                         (vconcat (mapcar (lambda (c) (or (funcall annotate c) "")) candidates))))
      ;; And as a user: M-x completion-at-point inserts the only candidate, in full.
      (let ((before (buffer-string)))
        (completion-at-point)
        (memlsp-test-put 'buffer_before before)
        (memlsp-test-put 'buffer_after (buffer-substring-no-properties (point-min) (point-max))))
      (memlsp-test-put 'ok t)
      (memlsp-test-write)
      ;; Shut the server down properly (it would also exit on its stdin closing).
      (ignore-errors (eglot-shutdown (eglot-current-server) nil 30))
      (kill-emacs 0))
  (error
   (memlsp-test-put 'error (error-message-string err))
   (memlsp-test-write)
   (kill-emacs 1)))

;;; driver.el ends here
